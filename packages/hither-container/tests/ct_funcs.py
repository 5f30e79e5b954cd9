"""hither functions of hither-container's tests (module level: importable by workers and
shipped to containers as a code bundle)."""
import os
import socket
import time

import numpy as np
import hither as hi

IMAGE = os.environ.get("HITHER_TEST_IMAGE", "hither-test/python-numpy:3.11")


@hi.function('ct_probe', '0.1.0')
@hi.container('docker://' + IMAGE)
def ct_probe(write_to=None, look=()):
    if write_to:
        with open(write_to, 'w') as f:
            f.write('written inside')
    with open('/etc/os-release') as f:
        os_release = f.read()
    return {'hostname': socket.gethostname(), 'uid': os.getuid(), 'cwd': os.getcwd(),
            'cwd_entries': sorted(os.listdir('.')), 'nets': sorted(os.listdir('/sys/class/net')),
            'env': dict(os.environ), 'os_release': os_release,
            'stand_in': bool(getattr(hi, '__hither_stand_in__', False)),
            'hither_file': getattr(hi, '__file__', None), 'pid': os.getpid(),
            'seen': {p: os.path.exists(p) for p in look}}


@hi.function('ct_touch', '0.1.0')
def ct_touch(name):
    with open(name, 'w') as f:
        f.write('junk from a previous job')
    return sorted(os.listdir('.'))


@hi.function('ct_write_ro', '0.1.0')
def ct_write_ro(path):
    with open(path) as f:
        seen = f.read()
    try:
        with open(path, 'a') as f:
            f.write('changed')
        return seen, 'writable'
    except OSError as exc:
        return seen, type(exc).__name__


@hi.function('ct_sleep', '0.1.0')
def ct_sleep(t):
    time.sleep(t)
    return t


@hi.function('ct_exit', '0.1.0')
def ct_exit(code):
    os._exit(code)


@hi.function('ct_noop', '0.1.0')
def ct_noop():
    return None


@hi.function('ones', '0.1.0')
@hi.container('docker://' + IMAGE)
def ones(n):
    return np.ones(n)


@hi.function('add', '0.1.0')
@hi.container('docker://' + IMAGE)
def add(x, y):
    return x + y


@hi.function('mult', '0.1.0')
@hi.container('docker://' + IMAGE)
def mult(x, y):
    return x * y


@hi.function('invert', '0.1.0')
@hi.container('docker://' + IMAGE)
def invert(x):
    if isinstance(x, np.ndarray):
        return np.linalg.inv(x)
    return 1 / x


@hi.function('dot', '0.1.0')
@hi.container('docker://' + IMAGE)
def dot(x, y):
    return np.dot(x, y)


@hi.function('bad_container', '0.1.0')
@hi.container('docker://127.0.0.1:9/hither-test/no-such-image:1')  # loopback: refused at once
def bad_container(x):
    return x


@hi.function('in_image', '0.1.0')
@hi.container('docker://' + IMAGE)
def in_image(t=0.0, write=None):
    time.sleep(t)
    if write:
        with open(write, 'w') as f:
            f.write('from the container')
        return hi.File(write)
    with open('/etc/os-release') as f:
        return {'os_release': f.read(), 'sees_host_tree': os.path.exists('/work')}


@hi.function('hog', '0.1.0')
@hi.container('docker://' + IMAGE)
def hog(mb):
    chunks = [b'x' * (1024 * 1024) for _ in range(mb)]
    return len(chunks)


@hi.function('where', '0.1.0')
@hi.container('docker://' + IMAGE)
def where(i):
    return socket.gethostname(), os.getpid(), i


@hi.function('ct_spawn', '0.1.0')
def ct_spawn():
    import subprocess
    return subprocess.Popen(['sleep', '300'], start_new_session=False).pid


@hi.function('ct_proc_states', '0.1.0')
def ct_proc_states():
    states = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                with open('/proc/%s/stat' % p) as f:
                    states[int(p)] = f.read().split(') ')[1].split()[0]
            except OSError:
                pass
    return states


@hi.function('ct_read_stdin', '0.1.0')
def ct_read_stdin():
    """What the job reads on stdin (the container's stdin is the launcher's lifeline: the
    job must see no input there, and not block), and a child process's read too."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, '-c', 'import sys; print(repr(sys.stdin.read()))'],
                           capture_output=True, text=True, timeout=30)
    return {'job': sys.stdin.read(), 'child': child.stdout.strip()}
