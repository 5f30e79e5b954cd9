"""hither quickstart: a small real pipeline on the embedded local default.

Simulates noisy recordings, filters each in parallel worker processes, then combines the
summaries in a downstream job that waits for all of them (a pipeline), and shows what
hither recorded about each job.

    hatch run demo
"""
import time

import numpy as np

import hither as hi


@hi.function('simulate', '0.1.0')
def simulate(seed, n):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    return np.sin(2 * np.pi * 5 * t) + 0.5 * rng.standard_normal(n)


@hi.function('smooth', '0.1.0')
def smooth(x, width):
    kernel = np.ones(width) / width
    print(f"smoothing {x.size} samples with width {width}")
    return np.convolve(x, kernel, mode='same')


@hi.function('summarize', '0.1.0')
def summarize(signals):
    stack = np.stack(signals)
    return {'mean_power': float(np.mean(stack ** 2)), 'n': len(signals),
            'peak': (float(stack.max()), int(stack.argmax() % stack.shape[1]))}


def main():
    timer = time.time()
    jh = hi.ParallelJobHandler(num_workers=2)
    with hi.Config(job_handler=jh):
        raw = [simulate.run(seed=s, n=200_000) for s in range(6)]
        smoothed = [smooth.run(x=r, width=25) for r in raw]   # each waits for its input
    summary = summarize.run(signals=smoothed)                 # default handler, in process
    result = summary.wait()
    print('summary:', result)
    info = smoothed[0].get_runtime_info()
    print(f"a smooth job ran in worker pid {info.pid} on {info.host} for "
          f"{info.elapsed * 1000:.1f} ms and printed: {info.stdout.strip()!r}")
    print(f"{len(raw) + len(smoothed) + 1} jobs in {time.time() - timer:.2f} s")
    assert result['n'] == 6 and 0 < result['mean_power'] < 1


if __name__ == '__main__':
    main()
