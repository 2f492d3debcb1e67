"""Hostile programs, run for real in the bubblewrap sandbox.

Every test asserts the verdict and that nothing escaped: no process left behind (process
table), no planted file or secret read (the secret is the expected output, so a pass would
mean a leak), nothing written outside, no connection to the host. The last test checks that
the grader still grades correctly after all of it.
"""
from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import pytest
from grader_helpers import SUM_PROGRAM, SUM_TASK, assert_still_grades, leftover_processes, \
    stdin_task

import grader
from grader import Outcome

# One test; a pass means "ok" was printed. 64 MB keeps the wall backstop (3 x 0.3 s + 1 s +
# 10 ms/MB x 64 MB to fault the cap in) well under the 5 s each test allows.
ONE = stdin_task([("", "ok\n")], time_limit_s=0.3, memory_mb=64)
RTE, TLE, MLE, OLE, WA = (Outcome.RUNTIME_ERROR, Outcome.TIMEOUT, Outcome.MEMORY_LIMIT,
                          Outcome.OUTPUT_LIMIT, Outcome.WRONG_ANSWER)

HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n    os.fork()", {RTE, TLE}),
    "fork_bomb_that_spins": ("import os\nwhile True:\n    try:\n        os.fork()\n"
                             "    except OSError:\n        pass", {TLE}),
    "fork_and_sleep_orphans": ("import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n"
                               "        time.sleep(100)\n        os._exit(0)\nprint('ok')",
                               {Outcome.PASSED}),
    "double_fork_setsid_daemon": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                                  "    if os.fork() == 0:\n        time.sleep(100)\n"
                                  "    os._exit(0)\nprint('ok')", {Outcome.PASSED}),
    "infinite_loop": ("while True:\n    pass", {TLE}),
    "long_sleep": ("import time\ntime.sleep(1000)\nprint('ok')", {TLE}),
    "stops_itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nprint('ok')",
                     {TLE}),
    "ignores_sigterm": ("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "while True:\n    pass", {TLE}),
    "memory_bomb": ("x = []\nwhile True:\n    x.append(bytearray(10 ** 7))", {MLE}),
    "unbounded_print": ("while True:\n    print('ok' * 100)", {OLE}),
    "unbounded_stderr": ("import sys\nwhile True:\n    sys.stderr.write('x' * 1000)", {OLE}),
    "closed_stdout": ("import os\nos.close(1)\nprint('ok')", {RTE}),
    "closed_sys_stdout": ("import sys\nsys.stdout.close()\nprint('ok')", {RTE}),
    "closes_every_fd": ("import os\nos.closerange(0, 1024)\nprint('ok')", {RTE}),
    "reads_stdin_past_eof": ("import sys\nsys.stdin.read()\nprint(input())", {RTE}),
    "blocking_read": ("import os\nr, w = os.pipe()\nos.read(r, 1)\nprint('ok')", {TLE}),
    "kills_its_parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('ok')",
                         {RTE}),
    "kills_everything_it_can": ("import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('ok')",
                                {RTE}),
    "kills_pid_1": ("import os, signal\nfor s in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT,"
                    " signal.SIGSTOP):\n    os.kill(1, s)\nprint('ok')", {Outcome.PASSED}),
    "deep_recursion": ("def f(n):\n    return f(n + 1)\nf(0)", {RTE}),
    "deep_recursion_past_the_c_stack": ("import json, sys\nsys.setrecursionlimit(10 ** 8)\n"
                                        "x = []\nfor _ in range(10 ** 5):\n    x = [x]\n"
                                        "print(json.dumps(x))", {RTE}),
    "os_exit_nonzero": ("print('ok', flush=True)\nimport os\nos._exit(3)", {RTE}),
    "os_exit_zero_without_output": ("import os\nos._exit(0)", {WA}),
    "ctypes_segfault": ("import ctypes\nctypes.string_at(0)", {RTE}),
    "raises_its_rlimits_then_loops": (
        "import resource\nfor r in (resource.RLIMIT_CPU, resource.RLIMIT_AS, "
        "resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE):\n    try:\n"
        "        resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "    except (ValueError, OSError):\n        pass\nwhile True:\n    pass", {TLE}),
    "raises_its_rlimits_then_allocates": (
        "import resource\ntry:\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"
        "except (ValueError, OSError):\n    pass\nx = bytearray(2 ** 33)", {MLE}),
    "spawns_a_shell": ("import os, subprocess\nprint('ok' if os.system('echo ok') == 0 else 'no')"
                       "\nsubprocess.run(['/bin/sh', '-c', 'echo ok'])", {WA, RTE}),
    "monkeypatches_print_and_stdout": (
        "import builtins, sys\nbuiltins.print = lambda *a, **k: sys.__stdout__.write('ok\\n')\n"
        "sys.stdout = None\nprint('whatever')\nraise SystemExit", {WA, RTE, Outcome.PASSED}),
    "forges_result_records": ("import os, struct\nfor i in range(3):\n"
                              "    os.write(3, struct.pack('<IIII', i, 0, 0, 0))\nos._exit(0)",
                              {WA, RTE}),
    "thread_bomb": ("import threading, time\nwhile True:\n    threading.Thread(target=time.sleep,"
                    " args=(100,), daemon=True).start()", {RTE}),
    "fills_tmp": ("i = 0\nwhile True:\n    open(f'/tmp/f{i}', 'w').write('x' * 10 ** 6)\n"
                  "    i += 1", {RTE, OLE}),
}


@pytest.fixture
def g(bwrap_grader):
    yield bwrap_grader
    assert leftover_processes(bwrap_grader) == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile(g, name):
    program, outcomes = HOSTILE[name]
    started = time.monotonic()
    verdict = g.grade(program, ONE)
    assert verdict.outcome in outcomes, verdict
    assert time.monotonic() - started < 5.0  # wall backstop: 2.54 s
    assert leftover_processes(g) == []


def test_fork_bomb_is_capped_by_nproc(g):
    program = ("import os, sys, time\nn = 0\nwhile True:\n    try:\n        pid = os.fork()\n"
               "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(100)\n"
               "    n += 1\nsys.stderr.write(f'forked={n}\\n')")
    verdict = g.grade(program, ONE)
    forked = int(verdict.stderr_tail.split("forked=")[1].split()[0])
    assert forked < g.config.nproc  # the server and this child count too


def test_kills_its_parent_then_the_sandbox_recovers(g):
    supervisor_before = g._servers[0].host_pids() | g._servers[1].host_pids()
    verdicts = g.grade_many([(HOSTILE["kills_its_parent"][0], ONE)] * 4
                            + [(SUM_PROGRAM, SUM_TASK)] * 4)
    assert [v.outcome for v in verdicts] == [RTE] * 4 + [Outcome.PASSED] * 4
    assert "killed its parent" in verdicts[0].stderr_tail
    bwrap_pids = {s._proc.pid for s in g._servers}
    assert bwrap_pids <= supervisor_before  # the bwrap servers were not restarted


def test_planted_file_is_not_readable(g, tmp_path):
    secret = secrets.token_hex(16)
    planted = tmp_path / "secret.txt"
    planted.write_text(secret)
    task = stdin_task([("", secret)], time_limit_s=0.5)
    for path in (planted, f"/proc/1/root{planted}", f"/proc/self/root{planted}",
                 Path.cwd() / "pyproject.toml"):
        verdict = g.grade(f"print(open({str(path)!r}).read())", task)
        assert verdict.outcome is RTE and secret not in verdict.stderr_tail, path
        assert ("FileNotFoundError" in verdict.stderr_tail
                or "PermissionError" in verdict.stderr_tail)
    listing = g.grade("import os\nprint(sorted(os.listdir('/')))",
                      stdin_task([("", "['dev', 'lib', 'lib64', 'proc', 'root', 'tmp', 'usr']")]))
    assert listing.outcome in (Outcome.PASSED, WA)  # either way: no home, work tree or /etc


def test_environment_secret_is_not_readable(monkeypatch):
    secret = secrets.token_hex(16)
    monkeypatch.setenv("GRADER_TEST_SECRET", secret)
    program = ("import os\nfound = os.environ.get('GRADER_TEST_SECRET', '')\n"
               "for pid in os.listdir('/proc'):\n    try:\n"
               "        data = open(f'/proc/{pid}/environ', 'rb').read().decode()\n"
               "    except OSError:\n        continue\n"
               "    found += ''.join(v.split('=', 1)[1] for v in data.split('\\0') "
               "if v.startswith('GRADER_TEST_SECRET='))\nprint(found)")
    with grader.Grader(workers=1, sandbox="bwrap") as fresh:  # started with the secret set
        verdict = fresh.grade(program, stdin_task([("", secret)], time_limit_s=0.5))
        empty_env = fresh.grade("import os\nprint(dict(os.environ))", stdin_task([("", "{}")]))
        assert verdict.outcome is WA and empty_env.passed
        assert leftover_processes(fresh) == []


def test_nothing_is_written_outside(g, tmp_path):
    token = secrets.token_hex(8)
    targets = [tmp_path / f"escape-{token}", Path(f"/tmp/escape-{token}"),
               Path.cwd() / f"escape-{token}", Path(f"/dev/shm/escape-{token}")]
    program = ("import os\nok = 0\nfor path in %r:\n    try:\n        open(path, 'w').write('x')"
               "\n        ok += 1\n    except OSError:\n        pass\n"
               "os.makedirs('../../x/y', exist_ok=True)\nprint(ok)") % [str(t) for t in targets]
    verdict = g.grade(program, stdin_task([("", "0")], time_limit_s=0.5))
    assert verdict.outcome in (Outcome.PASSED, WA, RTE)
    for target in targets:
        assert not target.exists(), target
    # Whatever it wrote inside its own /tmp is gone before the next program starts.
    tidy = g.grade("import os\nprint(os.listdir('/tmp'))", stdin_task([("", "['w']")]))
    assert tidy.passed, tidy


def test_no_connection_to_a_host_listener(g):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        program = ("import socket\ns = socket.create_connection(('127.0.0.1', %d), timeout=1)\n"
                   "s.sendall(b'hello')\nprint('connected')") % port
        verdict = g.grade(program, stdin_task([("", "connected")], time_limit_s=0.5))
        assert verdict.outcome is RTE and "ConnectionRefusedError" in verdict.stderr_tail
        with pytest.raises(socket.timeout):
            listener.accept()
    outside = g.grade("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)",
                      ONE)
    assert outside.outcome is RTE and "unreachable" in outside.stderr_tail.lower()


def test_cannot_ptrace_or_inspect_the_supervisor(g):
    program = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "r = [libc.ptrace(16, pid, 0, 0) for pid in (1, os.getppid())]\nfor p in "
               "('/proc/1/mem', '/proc/1/environ', '/proc/1/fd/0'):\n    try:\n"
               "        open(p, 'rb').read(1)\n        r.append(p)\n    except OSError:\n"
               "        pass\nprint(r)")
    verdict = g.grade(program, stdin_task([("", "[-1, -1]")], time_limit_s=0.5))
    assert verdict.passed, verdict  # every attempt failed


def test_no_extra_file_descriptors(g):
    program = "import os\nprint(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))"
    verdict = g.grade(program, stdin_task([("", "[0, 1, 2, 3, 4, 5, 6]")], time_limit_s=0.5))
    assert verdict.passed, verdict  # 0-2 stdio, 3-5 result channels, 6 the listing itself


def test_tampered_builtins_and_junk_do_not_reach_the_next_program(g):
    junk = ("import builtins, os, sys\nos.makedirs('/tmp/junk/deep')\n"
            "open('/tmp/junk/deep/f', 'w').write('x')\nos.chmod('/tmp/junk/deep', 0)\n"
            "os.chmod('/tmp/junk', 0)\nbuiltins.len = None\nbuiltins.print = None\n"
            "sys.modules.clear()\nimport math\nmath.pi = 3")
    verdicts = g.grade_many([(junk, ONE)] * 2 + [(
        "import math, os\nprint(len(os.listdir('/tmp')), round(math.pi, 2))",
        stdin_task([("", "1 3.14")]))] * 2, workers=1)
    assert [v.passed for v in verdicts] == [False, False, True, True], verdicts


def test_the_grader_still_grades_correctly(g):
    assert_still_grades(g)
