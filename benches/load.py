#!/usr/bin/env python3
"""Load benchmark on loopback: SIPp's uac against four call handlers, in one run.

  sipp-uas   SIPp's own uas: the ceiling of the rig (the two SIPps alone)
  serve      sipdialog serve (UAS)
  b2bua      sipdialog b2bua -> SIPp uas
  kamailio   Kamailio, dialog module and record-routing (tests/kamailio/proxy.cfg) -> SIPp uas

For each, the call rate steps up until a step has a failed call; printed are the highest rate
with 0 failed calls, the CPU seconds the element under test spent per 1 000 calls at that
rate (user + system, from /proc), then whether that rate lasts when held for longer than
64xT1 (32 s), the time a handler keeps a finished INVITE's transaction and records (a short
step never fills them; `--sustain`; if it fails, the next lower rate is tried once), and its
memory with N calls held at once (proportional set size, so Kamailio's shared memory is
counted once over its processes).

Run from the repository root:  python3 benches/load.py            (about 25 minutes)
                               python3 benches/load.py --quick    (a smoke run)
Needs sipp and kamailio (`.ci/test` installs both); builds the sipdialog binary itself
(SIPDIALOG_BIN=path runs another build of it, for an A/B in one run).
"""

import argparse
import csv
import datetime
import glob
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SIPDIALOG_BIN") or os.path.join(ROOT, "target", "release", "sipdialog")
UAC = os.path.join(ROOT, "benches", "sipp", "uac_bench.xml")
UAS = os.path.join(ROOT, "benches", "sipp", "uas_bench.xml")
KAMAILIO_CFG = os.path.join(ROOT, "tests", "kamailio", "proxy.cfg")
FRONT, BACK, HTTP = 5060, 5070, 9090
TICK = os.sysconf("SC_CLK_TCK")
BUFF = ["-buff_size", "4194304"]
# Extra SIPp arguments for every SIPp started (`--trace-errors` adds `-trace_err`).
EXTRA = []
# 64xT1 (32 s) and a margin: how long a finished call's INVITE records and transactions stay.
DRAIN = 35


def children(pid):
    """pid and every descendant (Kamailio forks its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = open(stat).read().rsplit(")", 1)[1].split()
                if int(fields[1]) == p:
                    todo.append(int(stat.split("/")[2]))
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError):
            pass
    return total / TICK


def pss_mib(pids):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stop(proc, grace=15):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sipp(args, workdir, log):
    return subprocess.Popen(["sipp", *args, "-nostdin", *BUFF, *EXTRA], cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


def uac_step(workdir, target_port, rate, seconds, hold_ms):
    """One step of the uac: rate calls/s for `seconds`; (successful, failed, wall seconds)."""
    step_dir = tempfile.mkdtemp(dir=workdir)
    calls = rate * seconds
    args = [f"127.0.0.1:{target_port}", "-sf", UAC, "-i", "127.0.0.1", "-p", "5080",
            "-r", str(rate), "-m", str(calls), "-d", str(hold_ms), "-trace_stat", "-fd", "1",
            "-timeout", str(seconds + 40), "-timeout_error", "-max_socket", "1000"]
    start = time.time()
    proc = sipp(args, step_dir, os.path.join(step_dir, "uac.log"))
    try:
        proc.wait(seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    wall = time.time() - start
    ok = failed = 0
    for path in glob.glob(os.path.join(step_dir, "*.csv")):
        rows = list(csv.reader(open(path), delimiter=";"))
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            ok = int(last[head.index("SuccessfulCall(C)")])
            failed = int(last[head.index("FailedCall(C)")])
    if ok + failed < calls:
        failed += calls - ok - failed  # calls never completed count as failed
    return ok, failed, wall


class Element:
    """The call handler under test and what it needs behind it."""

    def __init__(self, name, workdir):
        self.name, self.workdir = name, workdir
        self.procs, self.measured = [], None

    def start(self):
        d = self.workdir
        # One SIPp caller is one source address: trusted, or the per-source limits (200 new
        # dialogs a second, 10 000 held) would be what this measures.
        policy = f"{d}/policy.toml"
        open(policy, "w").write('trusted_sources = ["127.0.0.0/8"]\n')
        if self.name == "sipp-uas":
            self.measured = sipp(["-sf", UAS, "-i", "127.0.0.1", "-p", str(FRONT)], d, f"{d}/uas.log")
            self.procs = [self.measured]
        elif self.name == "serve":
            self.measured = subprocess.Popen(
                [BIN, "serve", "--listen", f"127.0.0.1:{FRONT}", "--metrics", f"127.0.0.1:{HTTP}",
                 "--drain", "wait", "--drain-timeout", "1", "--policy", policy],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(f"{d}/serve.log", "w"))
            self.procs = [self.measured]
        else:
            uas = sipp(["-sf", UAS, "-i", "127.0.0.1", "-p", str(BACK)], d, f"{d}/uas.log")
            if self.name == "b2bua":
                self.measured = subprocess.Popen(
                    [BIN, "b2bua", "--listen", f"127.0.0.1:{FRONT}", "--upstream", f"127.0.0.1:{BACK}",
                     "--metrics", f"127.0.0.1:{HTTP}", "--drain", "wait", "--drain-timeout", "1",
                     "--policy", policy],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(f"{d}/b2bua.log", "w"))
            else:
                cfg = open(KAMAILIO_CFG).read()
                for key, value in (("SIP_PORT", FRONT), ("UAS_PORT", BACK), ("HTTP_PORT", HTTP), ("RUNDIR", d)):
                    cfg = cfg.replace(key, str(value))
                open(f"{d}/kamailio.cfg", "w").write(cfg)
                # Tuned as shared/peers says: the fast allocator and enough shared memory.
                self.measured = subprocess.Popen(
                    ["kamailio", "-f", f"{d}/kamailio.cfg", "-DD", "-E", "-x", "fm", "-m", "2048",
                     "-M", "32", "-n", "2", "-Y", d],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(f"{d}/kamailio.log", "w"))
            self.procs = [self.measured, uas]
        time.sleep(2)
        for p in self.procs:
            if p.poll() is not None:
                sys.exit(f"{self.name}: a process exited at start; see {d}")

    def pids(self):
        return children(self.measured.pid)

    def stop(self):
        for p in self.procs:
            stop(p)


def run(name, rates, seconds, held, hold_rate, root, sustain):
    workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=root)
    best = None
    steps = []
    el = Element(name, workdir)
    el.start()
    try:
        for rate in rates:
            before = cpu_seconds(el.pids())
            ok, failed, wall = uac_step(workdir, FRONT, rate, seconds, 0)
            used = cpu_seconds(el.pids()) - before
            per_k = used / max(ok, 1) * 1000
            steps.append((rate, ok, failed, per_k))
            print(f"  {name:9} {rate:6}/s for {seconds}s: {ok} ok, {failed} failed, "
                  f"{per_k:.3f} CPU s per 1000 calls ({wall:.0f}s)", flush=True)
            if failed:
                break
            best = (rate, per_k)
            time.sleep(3)  # let the previous step's calls (timewait) drain
        # The best rate held past 64xT1, after the ramp's records drained; then the next
        # lower one, once, if it failed.
        sustained = None
        lower = [r for r in rates if best and r <= best[0]][::-1]
        for rate in lower[:2] if sustain else []:
            time.sleep(DRAIN)
            ok, failed, wall = uac_step(workdir, FRONT, rate, sustain, 0)
            print(f"  {name:9} {rate:6}/s for {sustain}s (sustained): {ok} ok, {failed} failed "
                  f"({wall:.0f}s)", flush=True)
            if not failed:
                sustained = rate
                break
        if sustain:
            time.sleep(DRAIN)  # and its records drained before the memory step
        # Memory with `held` calls up at once: calls held long enough that they overlap.
        hold_ms = int(held / hold_rate * 1000) + 10_000
        step_dir = tempfile.mkdtemp(dir=workdir)
        args = [f"127.0.0.1:{FRONT}", "-sf", UAC, "-i", "127.0.0.1", "-p", "5080", "-r", str(hold_rate),
                "-m", str(held), "-d", str(hold_ms), "-l", str(held + 1000), "-trace_stat", "-fd", "1",
                "-max_socket", "1000"]
        uac = sipp(args, step_dir, f"{step_dir}/uac.log")
        time.sleep(held / hold_rate + 5)
        memory = pss_mib(el.pids())
        stop(uac, 5)
    finally:
        el.stop()
    return best, memory, steps, sustained


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three short steps and 5 000 held calls")
    ap.add_argument("--only", nargs="*", default=["sipp-uas", "serve", "b2bua", "kamailio"])
    ap.add_argument("--rates", type=int, nargs="*", help="the steps' call rates (default 1 000 to 16 000)")
    ap.add_argument("--seconds", type=int, default=10, help="length of each rate step")
    ap.add_argument("--held", type=int, default=50_000, help="calls held at once for the memory figure")
    ap.add_argument("--sustain", type=int, default=45,
                    help="seconds the best rate is held after the ramp (0: skip)")
    ap.add_argument("--trace-errors", action="store_true",
                    help="every SIPp writes what it did not expect to <scenario>_<pid>_errors.log in its step's folder")
    args = ap.parse_args()
    if args.trace_errors:
        EXTRA.append("-trace_err")
    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (.ci/test installs it)")
    subprocess.run(["cargo", "build", "--release", "--bin", "sipdialog"], cwd=ROOT, check=True)
    rates = args.rates or [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 10000, 12000, 14000, 16000]
    seconds, held, hold_rate = args.seconds, args.held, 2500
    if args.quick:
        rates, seconds, held, hold_rate = [500, 1000, 2000], 3, 5000, 1000
        args.sustain = 0
    root = tempfile.mkdtemp(prefix="sipdialog-load-")
    results = {}
    for name in args.only:
        print(f"{name}:", flush=True)
        results[name] = run(name, rates, seconds, held, hold_rate, root, args.sustain)
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"\nload on loopback, {datetime.date.today()}, {os.cpu_count()} cores ({cpu}), "
          f"{platform.system()} {platform.release()}; steps of {seconds}s; logs in {root}")
    print(f"| handler | highest rate with 0 failed calls | CPU s per 1 000 calls | memory (PSS) with {held} calls held "
          f"| held {args.sustain}s with 0 failed |")
    print("|---|---|---|---|---|")
    base = results.get("sipp-uas", (None,))[0]
    for name, (best, memory, _, sustained) in results.items():
        rate = f"{best[0]} calls/s" if best else "none clean"
        cpu_k = f"{best[1]:.3f}" if best else "—"
        held_for = f"{sustained} calls/s" if sustained else ("none" if args.sustain else "not run")
        print(f"| {name} | {rate} | {cpu_k} | {memory:.0f} MiB | {held_for} |")
    for name in ("serve", "b2bua"):
        if name in results and results[name][0] and base:
            print(f"{name}: {results[name][0][0] / base[0]:.2f}x the rate of SIPp's uas")
    if "b2bua" in results and "kamailio" in results and results["kamailio"][0] and results["b2bua"][0]:
        b, k = results["b2bua"][0], results["kamailio"][0]
        print(f"b2bua vs kamailio: {b[0] / k[0]:.2f}x the clean rate, "
              f"{k[1] / b[1]:.2f}x less CPU per call")


if __name__ == "__main__":
    main()
