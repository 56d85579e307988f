"""A stand-in for nvidia-ml-py's `pynvml`: same function names, constants and NVMLError, fake GPUs.

Put this folder first on PYTHONPATH (or the module in sys.modules["pynvml"]) and scribewatch's GPU
collector reads these GPUs. Configuration is read at every call, so a test can change it while
a daemon runs:

* FAKE_NVML_CONFIG: path of a JSON file `{"gpus": [GPU, …], "fail": MODE}` where GPU has the keys
  of `DEFAULT_GPUS` below (any left out take GPU 0's defaults) and a process pid may be "self"
  (the process calling NVML). Takes precedence over the variables below.
* FAKE_NVML_GPUS: how many of the default GPUs (0, 1 or 2; default 1).
* FAKE_NVML_FAIL: "library" (nvmlInit: shared library not found), "driver" (nvmlInit: driver not
  loaded), "read" (device queries raise NVML_ERROR_GPU_IS_LOST: an error mid-scrape), or empty.
* FAKE_NVML_UNSUPPORTED: comma-separated queries this GPU model does not support
  (utilization, memory, processes, temperature, power, clock, throttle).
"""

from __future__ import annotations

import json
import os
import types

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksEventReasonDisplayClockSetting = 0x100
nvmlClocksEventReasonNone = 0x0
nvmlClocksThrottleReasonGpuIdle = nvmlClocksEventReasonGpuIdle
nvmlClocksThrottleReasonSwPowerCap = nvmlClocksEventReasonSwPowerCap
nvmlClocksThrottleReasonHwSlowdown = nvmlClocksEventReasonHwSlowdown
nvmlClocksThrottleReasonSwThermalSlowdown = nvmlClocksEventReasonSwThermalSlowdown
nvmlClocksThrottleReasonHwThermalSlowdown = nvmlClocksEventReasonHwThermalSlowdown

_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Like pynvml's: NVMLError(code) builds the code's subclass; `.value` is the code."""

    _valClassMapping: dict = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return _ERROR_TEXT.get(self.value, f"NVML error {self.value}")

    def __eq__(self, other):
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


for _code, _name in ((NVML_ERROR_UNINITIALIZED, "Uninitialized"),
                     (NVML_ERROR_NOT_SUPPORTED, "NotSupported"),
                     (NVML_ERROR_DRIVER_NOT_LOADED, "DriverNotLoaded"),
                     (NVML_ERROR_LIBRARY_NOT_FOUND, "LibraryNotFound"),
                     (NVML_ERROR_GPU_IS_LOST, "GpuIsLost")):
    _cls = type(f"NVMLError_{_name}", (NVMLError,), {})
    globals()[_cls.__name__] = _cls
    NVMLError._valClassMapping[_code] = _cls

GIB = 1024 ** 3
MIB = 1024 ** 2

# A homelab box: a card doing the transcription (and a Plex transcode beside it), and an idle one.
DEFAULT_GPUS = [
    {"name": "NVIDIA GeForce RTX 3060", "uuid": "GPU-5a7c3e1d-8f2b-4c69-9e0a-1d2b3c4d5e6f",
     "utilization": 63, "memory_total": 12 * GIB, "memory_used": int(3.5 * GIB),
     "temperature": 67, "power_mw": 118_250, "sm_clock_mhz": 1777,
     "throttle_reasons": nvmlClocksEventReasonSwPowerCap,
     "processes": [{"pid": "self", "memory": int(1.25 * GIB)}, {"pid": 4242, "memory": 512 * MIB}]},
    {"name": "NVIDIA GeForce GTX 1660 SUPER", "uuid": "GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
     "utilization": 0, "memory_total": 6 * GIB, "memory_used": 280 * MIB,
     "temperature": 38, "power_mw": 9_800, "sm_clock_mhz": 300,
     "throttle_reasons": nvmlClocksEventReasonGpuIdle, "processes": []},
]

_initialised = 0


def _config() -> dict:
    path = os.environ.get("FAKE_NVML_CONFIG")
    if path:
        with open(path) as f:
            config = json.load(f)
        config["gpus"] = [{**DEFAULT_GPUS[0], **g} for g in config.get("gpus", [])]
        return config
    count = int(os.environ.get("FAKE_NVML_GPUS", "1"))
    return {"gpus": DEFAULT_GPUS[:count], "fail": os.environ.get("FAKE_NVML_FAIL", "")}


def _unsupported() -> set[str]:
    return set(filter(None, os.environ.get("FAKE_NVML_UNSUPPORTED", "").split(",")))


class _Handle:
    def __init__(self, index: int):
        self.index = index


def _gpu(handle: _Handle, query: str) -> dict:
    """The GPU behind `handle`, checking what a real library would check first."""
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    config = _config()
    if config.get("fail") == "read":
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    if query in _unsupported():
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if not isinstance(handle, _Handle) or handle.index >= len(config["gpus"]):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return config["gpus"][handle.index]


# -- library and system -----------------------------------------------------------------------
def nvmlInit():
    global _initialised
    fail = _config().get("fail")
    if fail == "library":
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if fail == "driver":
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    _initialised += 1


def nvmlInitWithFlags(flags):
    nvmlInit()


def nvmlShutdown():
    global _initialised
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    _initialised -= 1


def nvmlSystemGetDriverVersion():
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return "550.120"


def nvmlErrorString(result):
    return _ERROR_TEXT.get(result, f"NVML error {result}")


# -- devices ----------------------------------------------------------------------------------
def nvmlDeviceGetCount():
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return len(_config()["gpus"])


def nvmlDeviceGetHandleByIndex(index):
    if not _initialised:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    if not 0 <= index < len(_config()["gpus"]):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(index)


def nvmlDeviceGetName(handle):
    return _gpu(handle, "name")["name"]


def nvmlDeviceGetUUID(handle):
    return _gpu(handle, "uuid")["uuid"]


def nvmlDeviceGetUtilizationRates(handle):
    gpu = _gpu(handle, "utilization")
    return types.SimpleNamespace(gpu=gpu["utilization"], memory=gpu["utilization"] // 2)


def nvmlDeviceGetMemoryInfo(handle, version=None):
    gpu = _gpu(handle, "memory")
    total, used = gpu["memory_total"], gpu["memory_used"]
    return types.SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetTemperature(handle, sensor):
    if sensor != NVML_TEMPERATURE_GPU:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _gpu(handle, "temperature")["temperature"]


def nvmlDeviceGetPowerUsage(handle):
    return _gpu(handle, "power")["power_mw"]          # milliwatts, like NVML


def nvmlDeviceGetClockInfo(handle, type):
    gpu = _gpu(handle, "clock")
    if type != NVML_CLOCK_SM:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return gpu["sm_clock_mhz"]                          # MHz, like NVML


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    return _gpu(handle, "throttle")["throttle_reasons"]


nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons


def nvmlDeviceGetComputeRunningProcesses(handle):
    gpu = _gpu(handle, "processes")
    return [types.SimpleNamespace(pid=os.getpid() if p["pid"] == "self" else p["pid"],
                                  usedGpuMemory=p["memory"], gpuInstanceId=0xFFFFFFFF,
                                  computeInstanceId=0xFFFFFFFF)
            for p in gpu["processes"]]
