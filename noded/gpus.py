"""The node's NVIDIA GPUs through NVML (`nvidia-ml-py`), and what Ollama derives from them.

Without a driver (or without the library) the node is a CPU node and says so: an empty list. NVML is
initialised once; a failure is logged once, and the agent keeps heartbeating either way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pynvml

from ollama_connector.shared.wire import Gpu

log = logging.getLogger(__name__)
GIB = 1024**3


class Nvml:
    """Reads the GPUs at each heartbeat; no GPU, or no driver, reads as []."""

    def __init__(self) -> None:
        self._ready: bool | None = None  # None: not tried yet
        self._failing = False  # reading failed: said once, until a read works again

    def _start(self) -> bool:
        if self._ready is None:
            try:
                pynvml.nvmlInit()
                self._ready = True
            except pynvml.NVMLError as exc:
                if driver := nvidia_driver():
                    log.warning(
                        "the NVIDIA driver is installed (%s) but NVML sees no GPU (%s): this node reports"
                        " itself as a CPU node. Under systemd the agent must see /dev/nvidia* (its unit:"
                        " DeviceAllow=char-nvidia* rw, and no PrivateDevices=yes)",
                        driver,
                        exc,
                    )
                else:
                    log.info("no NVIDIA GPU found (%s): a CPU node", exc)
                self._ready = False
        return self._ready

    def read(self) -> list[Gpu]:
        if not self._start():
            return []
        try:
            gpus = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                busy = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
                gpus.append(
                    Gpu(
                        name=(name.decode(errors="replace") if isinstance(name, bytes) else name)[:200],
                        memory_total=int(memory.total),
                        memory_used=int(memory.used),
                        utilization=min(1.0, max(0.0, busy / 100)),
                    )
                )
        except pynvml.NVMLError as exc:  # a driver that went away, a GPU fallen off the bus
            if not self._failing:
                log.warning("reading the GPUs through NVML failed (%s); reporting none until it works", exc)
                self._failing = True
            self._ready = None  # initialise again next time
            return []
        if self._failing:
            log.info("the GPUs can be read through NVML again")
            self._failing = False
        return gpus


def nvidia_driver(proc: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The NVIDIA kernel driver's version line, when one is loaded on this machine."""
    try:
        return proc.read_text().splitlines()[0].strip()[:200] or None
    except (OSError, IndexError):
        return None


def default_context(configured: int, vram_bytes: int) -> int:
    """The context Ollama gives a request without num_ctx: OLLAMA_CONTEXT_LENGTH when set, else by VRAM
    tier (`server/routes.go`: 256k from 47 GiB, 32k from 23 GiB, else 4k)."""
    if configured > 0:
        return configured
    if vram_bytes >= 47 * GIB:
        return 262144
    if vram_bytes >= 23 * GIB:
        return 32768
    return 4096
