#!/usr/bin/env python3
"""CPU per thread name while `cattery-bench rbac` runs its load, mode by mode.

Usage (after `cargo build --release -p cattery-bench`): scripts/bench-rbac-thread-cpu.py [ROUNDS]

For each measured load it samples /proc/PID/task/*/stat 2 s after the warm-up starts and
3 s later, and prints the cores used per thread name (tokio workers, the audit journal and
indexer, tantivy's threads). It shows where the audit trail's CPU comes from: the request
threads, or the background threads running in otherwise idle time. Linux only.
"""
import os, sys, time, subprocess, collections
def snap(pid):
    d=collections.Counter()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            st=open(f"/proc/{pid}/task/{t}/stat").read()
        except FileNotFoundError: continue
        comm=st[st.index('(')+1:st.rindex(')')]
        f=st[st.rindex(')')+2:].split()
        d[comm]+= int(f[11])+int(f[12])
    return d
p=subprocess.Popen([os.path.join(os.path.dirname(os.path.abspath(__file__)),"..","target","release","cattery-bench"),"rbac","--duration","6s","--rounds",sys.argv[1] if len(sys.argv)>1 else "2"],stderr=subprocess.STDOUT,stdout=subprocess.PIPE,text=True)
mode=None
for line in p.stdout:
    if "RBAC" in line and "round" in line: mode=line.strip()
    if "warm-up +" in line:
        time.sleep(2.0); a=snap(p.pid); t0=time.time(); time.sleep(3.0); b=snap(p.pid); dt=time.time()-t0
        tot=sum((b-a).values())
        print(mode, "total cores:", round(tot/100/dt,2))
        for k,v in sorted((b-a).items(), key=lambda x:-x[1])[:8]: print("   ",k, round(v/100/dt,3))
        sys.stdout.flush()
    if "req/s, p50" in line: print("  ", line.strip()); sys.stdout.flush()
p.wait()
