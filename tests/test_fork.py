"""Fork safety and the thread-pool bounds (SPEC section 10).

A process forked after rankgrad ran a kernel has no worker threads of the parent's pool; the
kernels must rebuild the pool there instead of waiting forever. Every child runs under a timeout,
so a regression fails here instead of hanging CI.
"""

import multiprocessing
import os
import signal
import sys

import numpy as np
import pytest

import rankgrad
from rankgrad import _core

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs os.fork")

TIMEOUT = 60


@pytest.fixture(autouse=True)
def _deadline():
    """Fail (instead of hanging) if a test as a whole outlives its children's timeouts."""

    def expire(signum, frame):
        raise TimeoutError("test_fork: deadline passed; a forked child hung in a rankgrad kernel")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(3 * TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    s = rng.random((4, 10))
    y = rng.integers(0, 3, (4, 10)).astype(np.float64)
    return s, y


def _ndcg_reference(s, y):
    """Plain numpy NDCG of each row (ties never happen with random floats)."""
    out = []
    for si, yi in zip(s, y):
        g = 2.0**yi - 1
        disc = 1 / np.log2(np.arange(len(si)) + 2)
        dcg = (g[np.argsort(-si, kind="stable")] * disc).sum()
        idcg = (np.sort(g)[::-1] * disc).sum()
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return np.array(out)


def _kernels(seed):
    s, y = _data(seed)
    v = rankgrad.ndcg(s, y)
    grad, hess = rankgrad.lambdarank_gradients(s.ravel(), y.ravel(), [10, 10, 10, 10])
    return v, grad, hess


def _warm_up():
    """Run kernels in this process, so the pool (and its threads) exist before the fork."""
    rankgrad.set_num_threads(2)
    _kernels(0)


def test_os_fork_child_computes_and_exits():
    _warm_up()
    s, y = _data(1)
    want = rankgrad.ndcg(s, y)
    np.testing.assert_allclose(want, _ndcg_reference(s, y), rtol=1e-12)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: compute, report through the pipe, exit without cleanup
        try:
            signal.alarm(TIMEOUT)
            got = rankgrad.ndcg(s, y)
            os.write(w, got.tobytes())
        finally:
            os._exit(0)
    os.close(w)
    deadline_ok = True
    try:
        import select

        ready, _, _ = select.select([r], [], [], TIMEOUT)
        if not ready:
            deadline_ok = False
            os.kill(pid, signal.SIGKILL)
        data = os.read(r, 1 << 16) if ready else b""
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert deadline_ok, "the forked child hung in a rankgrad kernel"
    np.testing.assert_array_equal(np.frombuffer(data, dtype=np.float64), want)


def test_multiprocessing_fork_pool():
    _warm_up()
    want = [_kernels(seed) for seed in range(4)]
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(2)
    try:
        got = pool.map_async(_kernels, range(4)).get(timeout=TIMEOUT)
    finally:
        pool.terminate()
    for (v, g, h), (wv, wg, wh) in zip(got, want):
        np.testing.assert_array_equal(v, wv)
        np.testing.assert_array_equal(g, wg)
        np.testing.assert_array_equal(h, wh)


def test_fork_after_set_num_threads_and_again_in_the_child():
    _warm_up()
    ctx = multiprocessing.get_context("fork")

    def child_task(q):
        rankgrad.set_num_threads(1)
        a = _kernels(3)
        rankgrad.set_num_threads(2)
        q.put((rankgrad.get_num_threads(), [x.tolist() for x in a], [x.tolist() for x in _kernels(3)]))

    q = ctx.Queue()
    p = ctx.Process(target=child_task, args=(q,))
    p.start()
    try:
        n, a, b = q.get(timeout=TIMEOUT)
    finally:
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
    assert n == 2
    assert a == b == [x.tolist() for x in _kernels(3)]


class _KernelDataset:
    """A map-style dataset whose items are computed by rankgrad kernels in the worker."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        v, g, h = _kernels(i)
        return np.concatenate([v, g, h])


def test_dataloader_fork_workers():
    torch = pytest.importorskip("torch")
    _warm_up()
    want = np.stack([_KernelDataset()[i] for i in range(6)])
    loader = torch.utils.data.DataLoader(
        _KernelDataset(), batch_size=2, num_workers=2, multiprocessing_context="fork", timeout=TIMEOUT
    )
    got = torch.cat(list(loader)).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("bad", [0, -1, _core.MAX_THREADS + 1, 10**12, 2**70])
def test_set_num_threads_range(bad):
    with pytest.raises(ValueError, match=r"n must be between 1 and \d+"):
        rankgrad.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", True, [2]])
def test_set_num_threads_type(bad):
    with pytest.raises(TypeError, match="n must be an int"):
        rankgrad.set_num_threads(bad)


def test_set_num_threads_bounds_and_reset():
    # 4 x the logical CPUs this process may use (affinity and cgroup quota, as Rust's
    # std::thread::available_parallelism counts them).
    cpus = _core.MAX_THREADS // 4
    assert _core.MAX_THREADS == 4 * cpus and 1 <= cpus <= os.cpu_count()
    try:
        rankgrad.set_num_threads(1)
        assert rankgrad.get_num_threads() == 1
        rankgrad.set_num_threads(np.int64(3))
        assert rankgrad.get_num_threads() == 3
        rankgrad.set_num_threads(_core.MAX_THREADS)
        assert rankgrad.get_num_threads() == _core.MAX_THREADS
        s, y = _data(2)
        np.testing.assert_allclose(rankgrad.ndcg(s, y), _ndcg_reference(s, y), rtol=1e-12)
    finally:
        rankgrad.set_num_threads(None)  # back to the default pool
    default = int(os.environ.get("RAYON_NUM_THREADS", "0")) or cpus
    assert rankgrad.get_num_threads() == default
