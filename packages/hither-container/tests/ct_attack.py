"""hither functions that attack a warm container (tests of hither-container): job A plants
what it can (a command for the loop, a runtime that patches process 1, files in /tmp, a
process in a session of its own, a secret on its output); job B, next in the same
container, reports what it sees."""
import os
import subprocess
import sys

import hither as hi

EVIL_RUNTIME = "import numpy\nnumpy.sum = lambda *a, **k: 42\ndef main(argv):\n    return 0\n"


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


@hi.function('ct_plant', '0.1.0')
def ct_plant():
    import glob

    jobs = os.path.dirname(os.getcwd())
    ctl = os.path.join(os.path.dirname(jobs), 'ctl')
    evil = os.path.join(jobs, 'evil')
    tried = {}

    def attempt(name, fn):
        try:
            fn()
            tried[name] = 'done'
        except OSError as exc:
            tried[name] = type(exc).__name__

    attempt('evil_dir', lambda: (os.makedirs(evil, exist_ok=True),
                                 _write(os.path.join(evil, 'runner.py'), EVIL_RUNTIME)))
    attempt('ctl_job', lambda: _write(os.path.join(ctl, 'zzz-evil.job'), evil))
    attempt('ctl_runtime', lambda: [_write(p, EVIL_RUNTIME)
                                    for p in glob.glob(os.path.join(ctl, 'runtime-*'))])
    attempt('ctl_loop', lambda: _write(os.path.join(ctl, 'warm_loop.py'), '# replaced\n'))
    def reopen_loop_fds():  # the loop's descriptors (its FIFOs) through /proc
        loop = [p for p in os.listdir('/proc') if p.isdigit() and
                b'warm_loop.py' in open('/proc/%s/cmdline' % p, 'rb').read()][0]
        fds = [n for n in os.listdir('/proc/%s/fd' % loop) if int(n) > 2]
        if not fds:
            raise PermissionError('no descriptor of the loop to reach')
        for name in fds:
            os.close(os.open('/proc/%s/fd/%s' % (loop, name), os.O_WRONLY | os.O_NONBLOCK))

    attempt('proc1_fd', reopen_loop_fds)
    attempt('tmp', lambda: _write('/tmp/left-by-A', 'secret'))
    attempt('shm', lambda: _write('/dev/shm/left-by-A', 'secret'))
    # a watcher in a session of its own, meant to outlive the job and spy on the next one
    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # hither-spy'],
                     start_new_session=True, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    os.write(1, b'password=hunter2\n')
    os.write(2, b'password=hunter2\n')
    return tried


@hi.function('ct_victim', '0.1.0')
def ct_victim():
    import numpy as np

    me = os.getpid()
    procs = {}
    for p in os.listdir('/proc'):
        if p.isdigit() and int(p) != me:
            try:
                with open('/proc/%s/cmdline' % p, 'rb') as f:
                    procs[int(p)] = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            except OSError:
                continue
    jobs = os.path.dirname(os.getcwd())

    def listing(folder):
        try:
            return sorted(os.listdir(folder))
        except OSError:
            return []

    return {'sum': int(np.sum([1, 2])), 'tmp': listing('/tmp'), 'shm': listing('/dev/shm'),
            'procs': procs, 'jobs': listing(jobs), 'own': os.path.basename(os.getcwd())}


@hi.function('ct_crash_loud', '0.1.0')
def ct_crash_loud(mb=1):
    line = b'x' * 1023 + b'\n'
    for _ in range(mb * 1024):
        os.write(1, line)
    os.write(2, b'my own last words\n')
    os._exit(9)


@hi.function('ct_confinement', '0.1.0')
def ct_confinement():
    """What the container allows this job: the kernel's own view of it."""
    status = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            status[key] = value.strip()
    try:
        _write('/usr/hither-probe', 'x')
        image_writable = True
    except OSError:
        image_writable = False
    pids_max = None
    for path in ('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max'):
        try:
            with open(path) as f:
                pids_max = f.read().strip()
            break
        except OSError:
            continue
    with open('/proc/1/comm') as f:
        init = f.read().strip()
    _write('/tmp/probe', 'x')  # a writable /tmp
    return {'cap_eff': status.get('CapEff'), 'no_new_privs': status.get('NoNewPrivs'),
            'image_writable': image_writable, 'pids_max': pids_max, 'init': init,
            'home': os.environ.get('HOME')}
