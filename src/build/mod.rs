//! Writing in-dialog requests and responses into a caller-owned buffer.
