"""Where independent evaluations run: in this process (the default, no Ray import) or as Ray tasks on a local or
remote cluster (`--executor ray`). Sweeps, recipe tables and diagnose's candidate evaluations hand their work to
an Executor as Tasks of module-level functions; the results come back as the same values either way.

Work travels by content: `share(value)` puts model bytes and datasets into Ray's object store once, and tasks
receive them as arguments; a task asks for the CPUs or the GPU its backend uses. A task whose worker dies is
retried by Ray (`max_retries`); a task that raises fails the whole run with its own error (WorkbenchError stays
WorkbenchError: exit 2 in the CLI). Stop or Ctrl-C cancels what is still queued or running.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from workbench.core.errors import WorkbenchError, one_line
from workbench.core.progress import check_stop

EXECUTORS = ("local", "ray")
# Environment a Ray worker needs to find the same content-addressed cache (when it is on a shared filesystem)
FORWARDED_ENV = ("WORKBENCH_CACHE_DIR", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class Task:
    """One call `fn(*args)`; `cpus`/`gpus` are what Ray reserves for it (a TensorRT task asks for one GPU)."""

    fn: Callable[..., Any]
    args: tuple = ()
    cpus: float = 1.0
    gpus: float = 0.0


class Future:
    """A submitted task's result. Here: computed when first asked for, so a speculative submission that is
    never read costs nothing in this process."""

    def __init__(self, task: Task) -> None:
        self.task, self._value, self._done = task, None, False

    def result(self) -> Any:
        if not self._done:
            check_stop()
            self._value, self._done = self.task.fn(*self.task.args), True
        return self._value

    def cancel(self) -> None:
        """Drop the work if it has not run (a no-op here)."""


class Executor:
    """Runs Tasks: `run` yields (index, result) as each finishes, `submit` returns a Future; `workers` is how
    many run at once (1 here: callers speculate only where more than one can run)."""

    name = "local"
    workers = 1

    def share(self, value: Any) -> Any:
        """A handle to pass to many tasks (Ray: one copy in the object store; here: the value itself)."""
        return value

    def submit(self, task: Task) -> Future:
        return Future(task)

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            check_stop()
            yield i, task.fn(*task.args)

    def describe(self) -> str:
        return "in this process"

    def close(self) -> None:
        """Leave the cluster (a local cluster started here shuts down)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class RayExecutor(Executor):
    """Ray tasks on the cluster at `address` (else $RAY_ADDRESS, else a local cluster of `workers` CPUs started
    here and shut down by close())."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3) -> None:
        try:
            import ray
        except ImportError:
            raise WorkbenchError("--executor ray needs Ray: pip install 'workbench[ray]'") from None
        self.ray, self.max_retries = ray, max_retries
        address = address or os.environ.get("RAY_ADDRESS") or None
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        self.started_here = not ray.is_initialized()
        if self.started_here:
            if address:
                _check_reachable(address)
            try:
                ray.init(address=address, num_cpus=None if address else (workers or os.cpu_count()),
                         include_dashboard=False, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": env} if env else None)
            except ConnectionError as exc:
                raise WorkbenchError(f"cannot reach the Ray cluster at {address}: {exc}; start one with "
                                     "`ray start --head` or leave RAY_ADDRESS unset for a local cluster") from None
        self.address = address or ("local cluster" if self.started_here else "the running cluster")
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(_call)

    def share(self, value: Any) -> Any:
        return self.ray.put(value)

    def _start(self, task: Task) -> Any:
        return self._remote.options(num_cpus=task.cpus, num_gpus=task.gpus, max_retries=self.max_retries,
                                    name=getattr(task.fn, "__name__", "task")).remote(task.fn, *task.args)

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None

    def submit(self, task: Task) -> Future:
        return _RayFuture(self, self._start(task))

    def run(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        ray = self.ray
        index = {self._start(t): i for i, t in enumerate(tasks)}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                check_stop()
                for ref in done:
                    yield index[ref], self._get(ref)
        finally:
            for ref in pending:  # stopped, interrupted or failed: nothing keeps running for us
                ray.cancel(ref)

    def describe(self) -> str:
        return f"Ray ({self.address}, {self.workers} CPU{'s' if self.workers != 1 else ''})"

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds with one line when the head is not listening (ray.init retries for minutes, then exits)."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"cannot reach the Ray cluster at {address} ({one_line(exc)}); start one with "
                             "`ray start --head` there, or leave --ray-address and RAY_ADDRESS unset for a local "
                             "cluster") from None


class _RayFuture(Future):
    def __init__(self, executor: RayExecutor, ref: Any) -> None:
        self.executor, self.ref = executor, ref

    def result(self) -> Any:
        ray = self.executor.ray
        while not ray.wait([self.ref], timeout=0.5)[0]:
            check_stop()
        return self.executor._get(self.ref)

    def cancel(self) -> None:
        self.executor.ray.cancel(self.ref)


def get_executor(name: str | Executor | None = None, address: str | None = None,
                 workers: int | None = None) -> Executor:
    """"local" (default) or "ray"; an Executor passes through."""
    if isinstance(name, Executor):
        return name
    if name in (None, "local"):
        return Executor()
    if name == "ray":
        return RayExecutor(address, workers)
    raise WorkbenchError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
