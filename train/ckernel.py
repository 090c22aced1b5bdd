"""Optional native kernel for the per-timestep elementwise work of `nvmlstm.train.recurrence` (float32, table ADC).

Why: at the sizes we train (batch 64, hidden 32) every torch operation costs 3-5 us of dispatch whatever
its size, and one timestep of the contract is ~17 of them in the forward and ~10 in the backward. Here the
elementwise chain of one timestep (ADC lookup, tile sum, gate lookup, fixed-point cell update, h lookup --
and its reversed STE chain in the backward) is one call of a small C function (``ckernel.c``, package data
beside this module); only the GEMMs ``h @ W_h`` and ``dp @ W_h^T`` stay torch operations. `Kernel.input_tile`
and `Kernel.input_tile_backward` convert a row tile of input rows only for all timesteps in one call
(`nvmlstm.train.recurrence.InputTiles`), and the loop adds their sum (``acc_in``).

Why plain C through ``ctypes`` rather than ``torch.compile`` or a torch C++ extension: the source is ~150
lines that ``cc`` compiles in well under a second, whereas inductor measured ~15 s per (batch size,
sequence length) and a torch extension ~1 min of compilation -- longer than a whole digits run.

Build: at first use, into a cache directory (``$XDG_CACHE_HOME/nvmlstm`` or ``~/.cache/nvmlstm``; a private
temporary directory if that is not writable), and reused afterwards. The library is compiled with
``-march=native`` for speed, so it may only run on a CPU with the same instruction set: its file name is a
hash of everything the binary depends on -- the source, the compiler (resolved path and ``--version``
output), the flags, the machine type and the CPU's feature flags (``/proc/cpuinfo``) -- and a home
directory shared by machines with other CPUs holds one library per CPU type instead of crashing one of them
with an illegal instruction. Where the features cannot be read (no ``/proc/cpuinfo``) the build is portable
(no ``-march=native``). Why not a setuptools extension or cffi at install time: the kernel is optional
(training works without a compiler), the package is pure Python otherwise (an install must not need a
compiler), and an install-time ``-march=native`` build would have exactly the shared-home problem; a
portable install-time build gives up the SIMD the kernel is built for.

Checked calls: `Kernel.forward` and `Kernel.backward` take tensors, check every argument before the first
call into C -- dtype (`TypeError`), device, layout, shape and contiguity (`ValueError`), with the messages
the tests fix -- and pass raw addresses only of tensors they checked or allocated. Values that become table
indices are checked in C (``ckernel.c`` says how): the tables' contents once per sequence, so that every
index derived from them is in bounds; the dot products each step before the ADC lookup; the backward's
saved indices as they are used (an index out of bounds reads entry 0 and the call fails). A bad value makes
the call raise `ValueError` naming the array, its position and the allowed range; nothing is ever read or
written out of bounds. The checks cost at most ~1% of a QAT epoch.

Exactness: the forward does the same IEEE float32 operations as the torch path, in the same order, on
integer-valued numbers (``-ffp-contract=off``, no fast-math), so its outputs are the same integers;
``tests/test_train_model.py`` checks the recurrence (with this kernel) against the autograd reference and bit
for bit against golden, and the kernel against the torch path; ``tests/test_train_ckernel.py`` checks the
argument checks, the ADC it applies against `nvmlstm.golden.datapath.adc_convert` and the fallback.

Fallback: without a C compiler, if the compilation or loading fails, or with ``NVMLSTM_NO_CKERNEL=1``,
`load` returns ``None``, `nvmlstm.train.recurrence` runs its torch implementation (same results; a QAT
epoch ~1.4x slower, ``docs/performance.md``), and one line on stderr says so and why (once per process). With
``NVMLSTM_REQUIRE_CKERNEL=1`` that case raises `KernelUnavailable` instead (CI sets it, so CI tests the
kernel rather than the fallback).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.resources
import operator
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

from .exact import seg_addmm_, seg_mm_t

__all__ = ["load", "Kernel", "KernelUnavailable", "ForwardState", "DISABLE_ENV", "REQUIRE_ENV", "MAX_TABLE"]

DISABLE_ENV = "NVMLSTM_NO_CKERNEL"
REQUIRE_ENV = "NVMLSTM_REQUIRE_CKERNEL"

#: Flags of every build: exact IEEE float32 (no contraction into FMA, no fast-math), a shared library.
_FLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC")

# Return codes of ckernel.c (NVK_*).
(_OK, _BAD_P, _BAD_ADC_TAB, _BAD_COL_OFF, _BAD_GATE_TAB, _BAD_GATE_O, _BAD_CELL, _BAD_KA, _BAD_KP, _BAD_ACC_IN) = range(
    10
)

_F32, _I64, _I32 = torch.float32, torch.int64, torch.int32


class KernelUnavailable(RuntimeError):
    """The native kernel is required (``NVMLSTM_REQUIRE_CKERNEL=1``) but cannot be used; the message says why."""


class _NoKernel(Exception):
    """Internal: why the kernel cannot be used (the message is the reason)."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


# ------------------------------------------------------------------------------------------------------
# Build
def _source() -> bytes:
    """The C source, a package-data file beside this module (``pyproject.toml``, package-data)."""
    try:
        return importlib.resources.files(__package__).joinpath("ckernel.c").read_bytes()
    except OSError as exc:  # an installation without its package data
        raise _NoKernel(f"the C source ckernel.c of {__package__} cannot be read ({exc})") from None


def _compiler() -> tuple[list[str], str]:
    """The C compiler's argv (``$CC`` or the first of cc, gcc, clang) and its ``--version`` output."""
    if os.environ.get("CC"):
        argv = shlex.split(os.environ["CC"])
        exe = shutil.which(argv[0])
        if exe is None:
            raise _NoKernel(f"the C compiler CC={os.environ['CC']!r} was not found")
    else:
        exe = next((p for p in map(shutil.which, ("cc", "gcc", "clang")) if p), None)
        if exe is None:
            raise _NoKernel("no C compiler found (set CC, or install cc, gcc or clang)")
        argv = [exe]
    argv[0] = os.path.realpath(exe)
    try:
        r = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise _NoKernel(f"the C compiler {argv[0]} does not run ({exc})") from None
    if r.returncode != 0:
        raise _NoKernel(f"the C compiler {argv[0]} does not run ('--version' exit status {r.returncode})")
    return argv, r.stdout


def _cpu_features() -> str | None:
    """The CPU's instruction-set feature flags as the kernel reports them (Linux), or ``None``."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features", "isa"):  # x86 | arm | riscv
            return f"{key.strip()}: {' '.join(sorted(set(value.split())))}"
    return None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / "nvmlstm"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="nvmlstm-kernel-"))  # read-only home: a private directory


def _build() -> Path:
    """The compiled library, from the cache or compiled now (see the module docstring for the key)."""
    src = _source()
    argv, version = _compiler()
    features = _cpu_features()
    # -march=native only where the CPU features are part of the key; a plain build if the compiler refuses.
    variants = ([("-march=native",)] if features is not None else []) + [()]
    cache = _cache_dir()
    errors = []
    for extra in variants:
        flags = (*_FLAGS, *extra)
        key = hashlib.sha256(
            "\0".join(
                [src.decode(), argv[0], *argv[1:], version, *flags, platform.machine(), features if extra else ""]
            ).encode()
        ).hexdigest()[:24]
        so = cache / f"ckernel-{key}.so"
        if so.exists():
            return so
        # Built next to its final name and renamed into place: concurrent processes never load half a file.
        tmp = so.with_name(f"{so.name}.{os.getpid()}.tmp")
        with importlib.resources.as_file(importlib.resources.files(__package__).joinpath("ckernel.c")) as path:
            try:
                r = subprocess.run(
                    [*argv, *flags, str(path), "-o", str(tmp), "-lm"], capture_output=True, text=True, timeout=300
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise _NoKernel(f"compiling ckernel.c failed ({exc})") from None
        if r.returncode == 0:
            os.replace(tmp, so)
            return so
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()), "no message")
        errors.append(f"exit status {r.returncode}: {first.strip()}")
    raise _NoKernel(f"compiling ckernel.c failed ({'; '.join(errors)})")


_i64, _ptr, _f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float


class _FwdArgs(ctypes.Structure):
    """``nvk_fwd`` of ckernel.c: the same fields, in the same order, with the same C types."""

    _fields_ = [
        ("B", _i64),
        ("R", _i64),
        ("N", _i64),
        ("H", _i64),
        ("adc_tab", _ptr),
        ("n_adc", _i64),
        ("gate_tab", _ptr),
        ("col_off", _ptr),
        ("h_oc", _ptr),
        ("n_c", _i64),
        ("cell_max", _i64),
        ("inv2F", _f32),
        ("acc_in", _ptr),
        ("acc_in_max", _i64),
        ("kp", _ptr),
        ("acc", _ptr),
        ("ka", _ptr),
        ("gates", _ptr),
        ("craw", _ptr),
        ("cs", _ptr),
        ("hs", _ptr),
        ("where", _ptr),
    ]


class _BwdArgs(ctypes.Structure):
    """``nvk_bwd`` of ckernel.c: the same fields, in the same order, with the same C types."""

    _fields_ = [
        ("B", _i64),
        ("R", _i64),
        ("N", _i64),
        ("H", _i64),
        ("dh", _ptr),
        ("dc", _ptr),
        ("dhs", _ptr),
        ("gates", _ptr),
        ("ka", _ptr),
        ("acc", _ptr),
        ("cs", _ptr),
        ("craw", _ptr),
        ("kp", _ptr),
        ("am_tab", _ptr),
        ("n_am", _i64),
        ("fac_tab", _ptr),
        ("n_fac", _i64),
        ("tanh_c", _ptr),
        ("dtanh_c", _ptr),
        ("cell_max", _i64),
        ("inv2F", _f32),
        ("kq", _f32),
        ("pmax", _i64),
        ("dacc", _ptr),
        ("dp", _ptr),
        ("sums", _ptr),
        ("where", _ptr),
    ]


def _layout() -> list[int]:
    """What ``nvk_layout`` of ckernel.c must report: sizeof and offsetof(where) of both structs."""
    return [ctypes.sizeof(_FwdArgs), _FwdArgs.where.offset, ctypes.sizeof(_BwdArgs), _BwdArgs.where.offset]


def _open(so: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(so))
    except OSError as exc:
        raise _NoKernel(f"loading {so} failed ({exc})") from None
    lib.fwd_check.argtypes = [_i64] * 3 + [_ptr, _i64, _ptr, _i64, _ptr, _i64, _i64, _ptr]
    lib.fwd_check.restype = _i64
    lib.nvk_forward_step.argtypes = [ctypes.POINTER(_FwdArgs), _i64, _ptr]
    lib.nvk_forward_step.restype = _i64
    lib.nvk_backward_step.argtypes = [ctypes.POINTER(_BwdArgs), _i64]
    lib.nvk_backward_step.restype = _i64
    lib.nvk_input_tile.argtypes = [_i64, _i64, _ptr, _i64, _ptr, _i64, _ptr, _ptr, _ptr]
    lib.nvk_input_tile.restype = _i64
    lib.nvk_input_tile_backward.argtypes = [_i64, _i64, _ptr, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr]
    lib.nvk_input_tile_backward.restype = _i64
    lib.nvk_layout.argtypes = [_ptr]
    lib.nvk_layout.restype = None
    got = (ctypes.c_int64 * 4)()
    lib.nvk_layout(ctypes.addressof(got))
    if list(got) != _layout():  # a field changed on one side only: refuse rather than pass wrong pointers
        raise _NoKernel(
            f"the argument structs of {so.name} do not match ckernel.py's (layout {list(got)}, expected {_layout()})"
        )
    return lib


@functools.lru_cache(maxsize=1)
def load() -> Kernel | None:
    """The native kernel, or ``None`` if it cannot be used (then one line on stderr says why).

    Raises
    ------
    KernelUnavailable
        If ``NVMLSTM_REQUIRE_CKERNEL=1`` is set and the kernel cannot be used (the message gives the reason).
    """
    try:
        if _flag(DISABLE_ENV):
            raise _NoKernel(f"{DISABLE_ENV}={os.environ[DISABLE_ENV]} is set")
        try:
            return Kernel(_open(_build()))
        except OSError as exc:  # the cache directory (writing, renaming): a reason like the others
            raise _NoKernel(f"building it failed ({exc})") from None
    except _NoKernel as exc:
        if _flag(REQUIRE_ENV):
            raise KernelUnavailable(
                f"the native training kernel is required ({REQUIRE_ENV}="
                f"{os.environ[REQUIRE_ENV]}) but unavailable: {exc}"
            ) from None
        print(
            f"nvmlstm: native training kernel not used: {exc}; training runs the torch implementation "
            f"(same results, slower; {REQUIRE_ENV}=1 makes this an error)",
            file=sys.stderr,
            flush=True,
        )
        return None


# ------------------------------------------------------------------------------------------------------
# Checked calls
class ForwardState(NamedTuple):
    """What `Kernel.forward` computes and `Kernel.backward` needs (T timesteps, B sequences)."""

    kp: torch.Tensor  #: (T, B, R*N) int32: p + pmax, the ADC-table index of every dot product
    acc: torch.Tensor  #: (T, B, N) float32: sum over row tiles of the ADC codes
    ka: torch.Tensor  #: (T, B, N) int64: gate-table index of acc
    gates: torch.Tensor  #: (T, B, N) float32: gate values i | f | g | o
    craw: torch.Tensor  #: (T, B, H) float32: c_t before saturation
    cs: torch.Tensor  #: (T + 1, B, H) float32: c_0 = 0, c_1 .. c_T
    hs: torch.Tensor  #: (T + 1, B, H) float32: h_0 = 0, h_1 .. h_T


def _int(fn: str, name: str, value, lo: int = 0) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an integer, not {type(value).__name__}") from None
    if v < lo:
        raise ValueError(f"{fn}: {name} must be >= {lo}, not {v}")
    return v


def _tensor(fn: str, name: str, t, dtype: torch.dtype, shape: tuple, *, contiguous: bool = True) -> torch.Size:
    """Check one tensor argument and return its shape; ``shape`` entries of ``None`` are free.

    The fast path is a handful of attribute reads (these checks run twice per training batch); the slow
    path finds which rule failed and raises with its message.
    """
    if (
        isinstance(t, torch.Tensor)
        and t.dtype == dtype
        and t.is_cpu
        and t.layout == torch.strided
        and (not contiguous or t.is_contiguous())
    ):
        sh = t.shape
        if len(sh) == len(shape):
            for s, w in zip(sh, shape):
                if w is not None and s != w:
                    break
            else:
                return sh
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, not {type(t).__name__}")
    if t.dtype != dtype:
        raise TypeError(f"{fn}: {name} has dtype {t.dtype}, expected {dtype}")
    if not t.is_cpu or t.layout != torch.strided:
        raise ValueError(f"{fn}: {name} is a {t.layout} tensor on {t.device}, expected a strided CPU tensor")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{fn}: {name} is not contiguous")
    want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "") + ")"
    raise ValueError(f"{fn}: {name} has shape {tuple(t.shape)}, expected {want}")


#: Largest table the kernel indexes: its indices are computed and checked in float32, exact below 2**24.
MAX_TABLE = 1 << 24


def _table(fn: str, name: str, t, length: int | None = None) -> int:
    """Check a 1-D float32 lookup table (of ``length`` entries if given); return its length."""
    n = _tensor(fn, name, t, _F32, (length,))[0]
    if n > MAX_TABLE:
        raise ValueError(f"{fn}: {name} has {n} entries, more than the kernel indexes exactly (2**24)")
    return n


def _at(t: int, flat: int, shape: tuple) -> str:
    """Timestep ``t`` and ``flat`` (a C-order position in one timestep's array of ``shape``) as ``[t, i, j]``."""
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return "[" + ", ".join(map(str, [t, *reversed(idx)])) + "]"


# Argument checks of `Kernel.forward` and `Kernel.backward`, in the order the methods run them (with more
# than one bad argument, the first in this order is the one reported).
def _ints(fn: str, **values) -> tuple[int, ...]:
    """Check integer arguments that must be >= 0 (`_int`), in the order given; return them as ints."""
    return tuple(_int(fn, name, value) for name, value in values.items())


def _bad_p(fn: str, pos: str, value: float, pmax: int) -> ValueError:
    """The error of a dot product outside the ADC table: ``pos`` is its position (`_at`), ``value`` it."""
    return ValueError(f"{fn}: dot product p{pos} = {value}, not an integer in [-pmax, pmax] = [-{pmax}, {pmax}]")


def _forward_shapes(fn: str, pre, wh, hseg: tuple | None) -> tuple[int, int, int, int, int]:
    """Check `Kernel.forward`'s ``pre`` and ``wh`` against each other; return T, B, R, N and H."""
    T, B, R, N = _tensor(fn, "pre", pre, _F32, (None, None, None, None), contiguous=False)
    H = _tensor(fn, "wh", wh, _F32, (None, R * N if hseg is None else N), contiguous=False)[0]
    if N != 4 * H:
        raise ValueError(f"{fn}: pre has {N} columns per tile, expected 4 x hidden = {4 * H}")
    return T, B, R, N, H


def _forward_tables(
    fn: str, N: int, pmax: int, cell_max: int, adc_tab, gate_tab, col_off, h_oc
) -> tuple[int, int, int, int]:
    """Check `Kernel.forward`'s tables' types and lengths (their contents are ``fwd_check``'s).

    Returns
    -------
    n_adc, n_gate : int
        The lengths of ``adc_tab`` and ``gate_tab``.
    n_c, n_o : int
        ``2 cell_max + 1`` and the number of gate-o codes (rows of ``h_oc``).
    """
    n_c = 2 * cell_max + 1
    n_adc = _table(fn, "adc_tab", adc_tab, 2 * pmax + 1)
    n_gate = _table(fn, "gate_tab", gate_tab)
    _tensor(fn, "col_off", col_off, _I64, (N,))
    n_hoc = _table(fn, "h_oc", h_oc)
    if n_hoc % n_c:
        raise ValueError(f"{fn}: h_oc has {n_hoc} entries, not a multiple of 2 cell_max + 1 = {n_c}")
    return n_adc, n_gate, n_c, n_hoc // n_c


def _table_error(rc: int, w: int, R: int, adc_tab, gate_tab, col_off, acc_in_max: int, n_o: int, n_c: int) -> str:
    """What ``fwd_check`` found wrong (its return code ``rc``) at position ``w`` of a forward table."""
    n_gate = len(gate_tab)
    if rc == _BAD_ADC_TAB:
        return f"adc_tab[{w}] = {float(adc_tab[w])}, not an integer of magnitude below 2**20"
    if rc == _BAD_COL_OFF:
        A = int(adc_tab.abs().max())
        S = R * A + acc_in_max
        extra = f" plus acc_in up to {acc_in_max}" if acc_in_max else ""
        return (
            f"col_off[{w}] = {int(col_off[w])}: acc in [-{S}, {S}] (R = {R} row tiles, ADC codes "
            f"up to {A}{extra}) would index gate_tab outside [0, {n_gate})"
        )
    if rc == _BAD_GATE_TAB:
        return f"gate_tab[{w}] = {float(gate_tab[w])}, not a finite number of magnitude at most 2**24"
    return (
        f"gate_tab[{w}] = {float(gate_tab[w])} is read by gate o, so it must be an integer in "
        f"[0, {n_o}) (h_oc has {n_o} rows of 2 cell_max + 1 = {n_c})"
    )


def _new_forward_state(pre: torch.Tensor, T: int, B: int, R: int, N: int, H: int) -> ForwardState:
    """The forward's output buffers, with ``c_0 = h_0 = 0``."""
    st = ForwardState(
        torch.empty(T, B, R * N, dtype=_I32),
        pre.new_empty(T, B, N),
        torch.empty(T, B, N, dtype=_I64),
        pre.new_empty(T, B, N),
        pre.new_empty(T, B, H),
        pre.new_empty(T + 1, B, H),
        pre.new_empty(T + 1, B, H),
    )
    st.cs[0].zero_()
    st.hs[0].zero_()
    return st


def _backward_shapes(fn: str, dhs, wh, fwd, hseg: tuple | None) -> tuple[int, int, int, int, int]:
    """Check `Kernel.backward`'s ``dhs``, ``wh`` and ``fwd`` against each other; return T, B, R, N and H."""
    if not isinstance(fwd, ForwardState):
        raise TypeError(f"{fn}: fwd must be a ForwardState, not {type(fwd).__name__}")
    T, B, H = _tensor(fn, "dhs", dhs, _F32, (None, None, None))
    N = _tensor(fn, "fwd.acc", fwd.acc, _F32, (T, B, None))[2]
    RN = _tensor(fn, "wh", wh, _F32, (H, None), contiguous=False)[1]
    if hseg is not None:
        if RN != N:
            raise ValueError(f"{fn}: wh has {RN} columns, expected 4 x hidden = {N} (with hseg)")
        # the number of row tiles comes from the forward's saved ADC indices (checked just below)
        RN = fwd.kp.shape[2] if isinstance(fwd.kp, torch.Tensor) and fwd.kp.dim() == 3 else N
    if N != 4 * H or RN % N:
        raise ValueError(
            f"{fn}: fwd.acc has {N} columns and wh {RN}, expected 4 x hidden = {4 * H} and a multiple of it"
        )
    _tensor(fn, "fwd.kp", fwd.kp, _I32, (T, B, RN))
    _tensor(fn, "fwd.ka", fwd.ka, _I64, (T, B, N))
    _tensor(fn, "fwd.gates", fwd.gates, _F32, (T, B, N))
    _tensor(fn, "fwd.craw", fwd.craw, _F32, (T, B, H))
    _tensor(fn, "fwd.cs", fwd.cs, _F32, (T + 1, B, H))
    return T, B, RN // N, N, H


def _saved_index_error(rc: int, t: int, w: int, fwd: ForwardState, cell_max: int, n_fac: int, n_am: int) -> str:
    """What ``nvk_backward_step`` found wrong (its return code ``rc``) in the forward's values at step ``t``."""
    B, H = fwd.craw.shape[1:]
    N, RN = fwd.acc.shape[2], fwd.kp.shape[2]
    if rc == _BAD_CELL:
        return (
            f"fwd.cs{_at(t + 1, w, (B, H))} = {float(fwd.cs[t + 1].view(-1)[w])}, not an integer "
            f"in [-{cell_max}, {cell_max}]"
        )
    if rc == _BAD_KA:
        return f"fwd.ka{_at(t, w, (B, N))} = {int(fwd.ka[t].view(-1)[w])}, outside fac_tab [0, {n_fac})"
    return f"fwd.kp{_at(t, w, (B, RN))} = {int(fwd.kp[t].view(-1)[w])}, outside am_tab [0, {n_am})"


class Kernel:
    """The compiled kernel (`load` builds it): the forward and backward loops of the recurrence, checked.

    Parameters
    ----------
    lib : ctypes.CDLL
        The library compiled from ``ckernel.c`` (argument and result types declared).
    """

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    def forward(
        self,
        pre: torch.Tensor,
        wh: torch.Tensor,
        *,
        pmax: int,
        adc_tab: torch.Tensor,
        gate_tab: torch.Tensor,
        col_off: torch.Tensor,
        h_oc: torch.Tensor,
        cell_max: int,
        frac_bits: int,
        hseg: tuple | None = None,
        acc_in: torch.Tensor | None = None,
        acc_in_max: int = 0,
    ) -> ForwardState:
        """The forward loop of `nvmlstm.train.recurrence.QuantRecurrence` (float32, ADC as a table).

        Per timestep the GEMM ``p = pre[t] + h_{t-1} @ wh`` in torch (``h_0 = 0``), then one C call for
        the elementwise chain (docs/training.md): ADC codes ``adc_tab[p + pmax]``, their sum over the R row
        tiles ``acc``, gates ``gate_tab[acc + col_off]``, ``c_t``, ``h_t = h_oc[o * (2 cell_max + 1) + c_t +
        cell_max]``.

        Parameters
        ----------
        pre : Tensor (T, B, R, N), float32
            The part of every row tile's dot product that does not depend on h (any strides).
        wh : Tensor (H, R * N), float32
            Recurrent weight codes, row-tiled; ``N == 4 H`` (any strides). With ``hseg``: (H, N), the
            recurrent rows of the transposed weight codes, and the GEMM runs per tile segment.
        pmax : int
            Bound of |p|: every dot product must be an integer in [-pmax, pmax].
        adc_tab : Tensor (2 pmax + 1,), float32
            ADC code of every dot product p (entry ``p + pmax``).
        gate_tab : Tensor (4 n_acc,), float32
            Gate value of every (gate, acc) (`nvmlstm.train.recurrence`).
        col_off : Tensor (N,), int64
            Offset of each column's acc into ``gate_tab``.
        h_oc : Tensor (n_o * (2 cell_max + 1),), float32
            h_t code of every (o, c_t).
        cell_max, frac_bits : int
            Saturation bound of c_t and its fractional bits F (``c_t = floor(m 2^-F + 1/2)``).
        hseg : tuple of (r, a, b), optional
            `nvmlstm.train.exact.tile_segments` of the h rows: the product ``h @ W_h`` is computed per
            segment (1/R of the multiply-adds of the zero-padded row-tiled form).
        acc_in : Tensor (T, B, N), float32, optional
            ADC codes of the row tiles converted before the loop (`input_tile`), added to every step's
            ``acc``; each step checks them to be integers of magnitude at most ``acc_in_max``.
        acc_in_max : int
            Bound of ``|acc_in|`` (tiles before the loop x the largest ADC code); the gate table must cover
            ``acc`` over ``R`` tiles plus this bound.

        Returns
        -------
        ForwardState

        Raises
        ------
        TypeError
            An argument of the wrong type or dtype.
        ValueError
            An argument of the wrong shape, device or layout, not contiguous, or a value that would index a
            table out of its bounds (the message names the array and position).
        """
        if torch.is_grad_enabled():  # the GEMMs write into buffers (out=): no graph (cheaper than a decorator)
            with torch.no_grad():
                return self.forward(
                    pre,
                    wh,
                    pmax=pmax,
                    adc_tab=adc_tab,
                    gate_tab=gate_tab,
                    col_off=col_off,
                    h_oc=h_oc,
                    cell_max=cell_max,
                    frac_bits=frac_bits,
                    hseg=hseg,
                    acc_in=acc_in,
                    acc_in_max=acc_in_max,
                )
        fn = "ckernel.forward"
        T, B, R, N, H = _forward_shapes(fn, pre, wh, hseg)
        RN = R * N
        pmax, cell_max, frac_bits = _ints(fn, pmax=pmax, cell_max=cell_max, frac_bits=frac_bits)
        n_adc, n_gate, n_c, n_o = _forward_tables(fn, N, pmax, cell_max, adc_tab, gate_tab, col_off, h_oc)
        acc_in_max = _int(fn, "acc_in_max", acc_in_max)
        if acc_in is not None:
            _tensor(fn, "acc_in", acc_in, _F32, (T, B, N))
        where = ctypes.c_int64(-1)
        wa = ctypes.addressof(where)
        # The tables once: then every index the loop derives from their contents is in bounds (ckernel.c).
        rc = self.lib.fwd_check(
            R, N, H, adc_tab.data_ptr(), n_adc, gate_tab.data_ptr(), n_gate, col_off.data_ptr(), n_o, acc_in_max, wa
        )
        if rc != _OK:
            msg = _table_error(rc, where.value, R, adc_tab, gate_tab, col_off, acc_in_max, n_o, n_c)
            raise ValueError(f"{fn}: {msg}")
        pre2 = pre.reshape(T, B, RN).contiguous()  # a view when pre is contiguous (the C side reads p[0] in place)
        st = _new_forward_state(pre, T, B, R, N, H)
        P = pre.new_empty(B, RN)
        # Raw addresses only of tensors checked above or allocated here, passed once in the struct; per
        # timestep only t and the GEMM's output cross into C.
        args = _FwdArgs(
            B,
            R,
            N,
            H,
            adc_tab.data_ptr(),
            n_adc,
            gate_tab.data_ptr(),
            col_off.data_ptr(),
            h_oc.data_ptr(),
            n_c,
            cell_max,
            2.0**-frac_bits,
            None if acc_in is None else acc_in.data_ptr(),
            acc_in_max,
            *(a.data_ptr() for a in st),
            wa,
        )
        ref = ctypes.byref(args)
        step = self.lib.nvk_forward_step
        for t in range(T):
            if t == 0:
                p = pre2[0]  # h_0 = 0: no GEMM
            elif hseg is None:
                p = torch.addmm(pre2[t], st.hs[t], wh, out=P)
            else:
                p = seg_addmm_(P.copy_(pre2[t]).view(B, R, N), st.hs[t], wh, hseg).view(B, RN)
            rc = step(ref, t, p.data_ptr())
            if rc != _OK:  # _BAD_P or _BAD_ACC_IN, the per-step checks of the forward
                w = where.value
                if rc == _BAD_ACC_IN:
                    raise ValueError(
                        f"{fn}: acc_in{_at(t, w, (B, N))} = {float(acc_in[t].view(-1)[w])}, not an "
                        f"integer in [-acc_in_max, acc_in_max] = [-{acc_in_max}, {acc_in_max}]"
                    )
                raise _bad_p(fn, _at(t, w, (B, RN)), float(p.view(-1)[w]), pmax)
        return st

    def backward(
        self,
        dhs: torch.Tensor,
        wh: torch.Tensor,
        fwd: ForwardState,
        *,
        pmax: int,
        am_tab: torch.Tensor,
        fac_tab: torch.Tensor,
        tanh_c: torch.Tensor,
        dtanh_c: torch.Tensor,
        cell_max: int,
        frac_bits: int,
        dac_max: int,
        hseg: tuple | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The BPTT loop of `nvmlstm.train.recurrence.QuantRecurrence` (straight-through estimator).

        Per timestep (last to first) one C call for the elementwise STE chain, filling ``dp[t]`` (the STE
        factors are looked up inside the call), then the GEMM ``dh_{t-1} = dp[t] @ wh^T``.

        Parameters
        ----------
        dhs : Tensor (T, B, H), float32
            dL/dh_t from the loss.
        wh : Tensor (H, R * N), float32
            The recurrent weight codes of the forward (any strides); (H, N) with ``hseg``.
        fwd : ForwardState
            The forward's values (`forward`; the indices in it are checked again).
        pmax : int
            As in `forward`.
        am_tab : Tensor (2 pmax + 1,), float32
            d a / d p of every dot product (entry ``p + pmax``).
        fac_tab : Tensor (n,), float32
            d gate / d acc per gate-table entry (the same layout as the forward's ``gate_tab``).
        tanh_c, dtanh_c : Tensor (2 cell_max + 1,), float32
            tanh(c_t) as a table code and its STE slope, entry ``c + cell_max``.
        cell_max, frac_bits, dac_max : int
            The config numbers of the forward.
        hseg : tuple of (r, a, b), optional
            As in `forward`.

        Returns
        -------
        dp : Tensor (T, B, R * N), float32
            dL/dp of every dot product.
        sums : Tensor (5,), float64
            Entries 0-3: per gate, the sum of ``d acc * acc`` (the gate-scale gradient times the gate
            scale); entry 4: the sum of ``dp * p`` (the LSQ step gradient is ``-sums[4] / step``).
        dacc : Tensor (T, B, N), float32
            dL/d acc of every timestep (also the gradient of the forward's ``acc_in``).

        Raises
        ------
        TypeError, ValueError
            As `forward`.
        """
        if torch.is_grad_enabled():  # as in `forward`
            with torch.no_grad():
                return self.backward(
                    dhs,
                    wh,
                    fwd,
                    pmax=pmax,
                    am_tab=am_tab,
                    fac_tab=fac_tab,
                    tanh_c=tanh_c,
                    dtanh_c=dtanh_c,
                    cell_max=cell_max,
                    frac_bits=frac_bits,
                    dac_max=dac_max,
                    hseg=hseg,
                )
        fn = "ckernel.backward"
        T, B, R, N, H = _backward_shapes(fn, dhs, wh, fwd, hseg)
        RN = R * N
        pmax, cell_max, frac_bits, dac_max = _ints(
            fn, pmax=pmax, cell_max=cell_max, frac_bits=frac_bits, dac_max=dac_max
        )
        n_am = _table(fn, "am_tab", am_tab, 2 * pmax + 1)
        n_fac = _table(fn, "fac_tab", fac_tab)
        _table(fn, "tanh_c", tanh_c, 2 * cell_max + 1)
        _table(fn, "dtanh_c", dtanh_c, 2 * cell_max + 1)
        dh = dhs.new_zeros(B, H)
        dc = dhs.new_zeros(B, H)
        DACC = dhs.new_empty(T, B, N)  # d acc of every step (the kernel's sums use it; acc_in's gradient)
        DP = dhs.new_empty(T, B, RN)
        sums = torch.zeros(5, dtype=torch.float64)
        where = ctypes.c_int64(-1)
        args = _BwdArgs(
            B,
            R,
            N,
            H,
            dh.data_ptr(),
            dc.data_ptr(),
            dhs.data_ptr(),
            fwd.gates.data_ptr(),
            fwd.ka.data_ptr(),
            fwd.acc.data_ptr(),
            fwd.cs.data_ptr(),
            fwd.craw.data_ptr(),
            fwd.kp.data_ptr(),
            am_tab.data_ptr(),
            n_am,
            fac_tab.data_ptr(),
            n_fac,
            tanh_c.data_ptr(),
            dtanh_c.data_ptr(),
            cell_max,
            2.0**-frac_bits,
            dac_max * 2.0 ** (-2 * frac_bits),
            pmax,
            DACC.data_ptr(),
            DP.data_ptr(),
            sums.data_ptr(),
            ctypes.addressof(where),
        )
        ref = ctypes.byref(args)
        step = self.lib.nvk_backward_step
        wh_t = wh.t()
        for t in range(T - 1, -1, -1):
            rc = step(ref, t)
            if rc != _OK:
                raise ValueError(f"{fn}: {_saved_index_error(rc, t, where.value, fwd, cell_max, n_fac, n_am)}")
            if t > 0:
                if hseg is None:
                    torch.mm(DP[t], wh_t, out=dh)
                else:
                    seg_mm_t(DP[t].view(B, R, N), wh, hseg, dh)
        return DP, sums, DACC

    def input_tile(self, p: torch.Tensor, acc: torch.Tensor, *, pmax: int, adc_tab: torch.Tensor) -> torch.Tensor:
        """ADC codes of one row tile that holds only input rows, every timestep at once (before the loop).

        ``acc += adc_tab[p + pmax]`` in place; the sum over such tiles is `forward`'s ``acc_in``.

        Parameters
        ----------
        p : Tensor (M, N), float32
            The tile's dot products (M = timesteps x sequences): integers in [-pmax, pmax].
        acc : Tensor (M, N), float32
            Accumulator, updated in place.
        pmax : int
            Bound of |p|, as in `forward`.
        adc_tab : Tensor (2 pmax + 1,), float32
            ADC code of every dot product (entry ``p + pmax``).

        Returns
        -------
        kp : Tensor (M, N), int32
            ``p + pmax``, the ADC-table index of every dot product (for `input_tile_backward`).

        Raises
        ------
        TypeError, ValueError
            As `forward`; a ``p`` outside [-pmax, pmax] or not an integer (``acc`` is then unchanged).
        """
        fn = "ckernel.input_tile"
        M, N = _tensor(fn, "p", p, _F32, (None, None))
        _tensor(fn, "acc", acc, _F32, (M, N))
        pmax = _int(fn, "pmax", pmax)
        n_adc = _table(fn, "adc_tab", adc_tab, 2 * pmax + 1)
        kp = torch.empty(M, N, dtype=_I32)
        where = ctypes.c_int64(-1)
        rc = self.lib.nvk_input_tile(
            M, N, p.data_ptr(), pmax, adc_tab.data_ptr(), n_adc, acc.data_ptr(), kp.data_ptr(), ctypes.addressof(where)
        )
        if rc != _OK:
            w = where.value
            raise _bad_p(fn, _at(w // N, w % N, (N,)), float(p.view(-1)[w]), pmax)
        return kp

    def input_tile_backward(
        self, dacc: torch.Tensor, kp: torch.Tensor, dp: torch.Tensor, *, pmax: int, am_tab: torch.Tensor
    ) -> float:
        """The STE backward of `input_tile`: ``dp = dacc * am_tab[kp]`` (into ``dp``).

        Returns the sum of ``dp * p`` (float64 accumulation; its part of the LSQ step gradient, like
        `backward`'s ``sums[4]``). Raises `ValueError` for a ``kp`` outside ``am_tab``.
        """
        fn = "ckernel.input_tile_backward"
        M, N = _tensor(fn, "dacc", dacc, _F32, (None, None))
        _tensor(fn, "kp", kp, _I32, (M, N))
        _tensor(fn, "dp", dp, _F32, (M, N))
        pmax = _int(fn, "pmax", pmax)
        n_am = _table(fn, "am_tab", am_tab, 2 * pmax + 1)
        total = ctypes.c_double(0.0)
        where = ctypes.c_int64(-1)
        rc = self.lib.nvk_input_tile_backward(
            M,
            N,
            dacc.data_ptr(),
            kp.data_ptr(),
            am_tab.data_ptr(),
            n_am,
            pmax,
            dp.data_ptr(),
            ctypes.addressof(total),
            ctypes.addressof(where),
        )
        if rc != _OK:
            w = where.value
            raise ValueError(f"{fn}: kp{_at(w // N, w % N, (N,))} = {int(kp.view(-1)[w])}, outside am_tab [0, {n_am})")
        return total.value
