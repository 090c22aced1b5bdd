"""Print the tables of docs/efficiency.md: the benchmark table of the default and a language-model-sized
config against the literature, and what each assumption does to the ratios over the best digital design.

Usage::

    .venv/bin/python benchmarks/efficiency_tables.py > /tmp/tables.md

Every number comes from `nvmlstm.bench` with the packaged technology file at 200 MHz; the cycles from the
accelerator's cycle formula (as `nvmlstm bench` does). Takes about a minute (the language-model config
builds an accelerator of ~10,000 macros for its cycle counts).
"""

from __future__ import annotations

import sys

from nvmlstm.bench.literature import DIGITAL_KINDS, load_literature, ratios
from nvmlstm.bench.model import evaluate
from nvmlstm.bench.technology import DEFAULT_TECH, load_technology, parse_technology
from nvmlstm.golden.config import DEFAULT_MACRO_LATENCY_CYC, default_config
from nvmlstm.timing import accelerator_timing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CLOCK_MHZ = 200.0
#: PTB "medium" LSTM (Zaremba et al., 2014): 650-unit embedding, 2 layers of 650, 10,000-word softmax head.
LM = default_config().replace(input_size=650, hidden_size=650, num_layers=2, output_size=10000)


def tech_with(**edits) -> object:
    """The default technology with ``section__key=value`` edits."""
    doc = tomllib.loads(DEFAULT_TECH.read_text())
    for dotted, v in edits.items():
        s, k = dotted.split("__")
        doc[s][k]["value"] = v
    what = ", ".join(f"{k.replace('__', '.')}={v}" for k, v in edits.items())
    return parse_technology(doc, f"edited default: {what}")


def run(cfg, lanes=None, tech=None, macro_latency=DEFAULT_MACRO_LATENCY_CYC):
    return evaluate(cfg, tech or load_technology(), accelerator_timing(macro_latency)(cfg, lanes), clock_mhz=CLOCK_MHZ)


def main() -> int:
    lit = load_literature()
    builds = {
        "default (I=8, H=32, L=1, O=10), lanes 32": run(default_config()),
        "default, lanes 1": run(default_config(), 1),
        "LM (I=650, H=650, L=2, O=10000), lanes 650": run(LM),
        "LM, lanes 65": run(LM, 65),
    }
    print(
        "| build | GOPS | latency/step (ns) | TOPS/W | TOPS/mm^2 | area (mm^2) | array utilization | "
        "x best digital TOPS/W | x best digital TOPS/mm^2 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in builds.items():
        rr = ratios(r, lit)
        print(
            f"| {name} | {r['gops']:.4g} | {r['latency_ns_per_step']:.4g} | {r['tops_per_w']:.3g} | "
            f"{r['tops_per_mm2']:.3g} | {r['area_mm2']:.3g} | {100 * r['array_utilization']:.1f}% | "
            f"{rr['tops_per_w']['digital']['ratio']:.3g} | {rr['tops_per_mm2']['digital']['ratio']:.3g} |"
        )
    print()
    print(
        "| build | energy/step (pJ): adc, dac, cells, add, mult, tables, registers "
        "| area (um^2): arrays, adc, dac, digital |"
    )
    print("|---|---|---|")
    for name, r in builds.items():
        e, a = r["energy_breakdown_pj"], r["area_breakdown_um2"]
        print(f"| {name} | {', '.join(f'{v:.4g}' for v in e.values())} | {', '.join(f'{v:.4g}' for v in a.values())} |")
    print()
    d = default_config()
    cases = {
        "as stated (default config, lanes 32)": run(d),
        "8-bit ADCs (head too)": run(d.replace(adc_bits=8)),
        "8-bit DACs": run(d.replace(dac_bits=8)),
        # the 1-bit figure times 15 levels instead of times 4 bits
        "DAC energy x 3.75 (scaling with levels, 2^4 - 1, not bits)": run(
            d, tech=tech_with(dac__energy_ref=0.39 * 15 / 4)
        ),
        "cell read energy x 10 (100 ns pulse)": run(d, tech=tech_with(nvm__pulse=100.0)),
        "1T1R cells (40 F^2)": run(d, tech=tech_with(nvm__cell_area=40.0)),
        "ADC FoM x 10 (61 fJ/step)": run(d, tech=tech_with(adc__walden_fom=61.0)),
        "digital energies x 3 (adds, multiplies, tables, registers)": run(
            d,
            tech=tech_with(
                digital__add8_energy=0.09,
                digital__mul8_energy=0.6,
                digital__table_read_energy=0.6,
                digital__register_bit_energy=0.015,
            ),
        ),
        "digital area x 3 (component estimate x 3)": run(
            d,
            tech=tech_with(
                digital__add8_area=108.0,
                digital__mul8_area=846.0,
                digital__register_bit_ge=13.5,
                digital__rom_bit_ge=1.5,
            ),
        ),
        "lanes 1": run(d, 1),
        "macro latency 10 cycles": run(d, macro_latency=10),
    }
    best_w = max((r for r in lit if r["kind"] in DIGITAL_KINDS and r["tops_per_w"]), key=lambda r: r["tops_per_w"])
    best_a = max((r for r in lit if r["kind"] in DIGITAL_KINDS and r["tops_per_mm2"]), key=lambda r: r["tops_per_mm2"])
    # Node normalization of the best digital design (65 nm) to our 32 nm: energy ~ F, area ~ F^2 (the
    # technology file's own digital scaling rule).
    k = 65 / 32
    print(
        f"| assumption | TOPS/W | TOPS/mm^2 | x {best_w['design']} TOPS/W (>= 2.4?) | x {best_a['design']} TOPS/mm^2 "
        f"(>= 40?) | same, digital scaled 65 -> 32 nm (x{k:.2f} TOPS/W, x{k * k:.2f} TOPS/mm^2) |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in cases.items():
        w, a = r["tops_per_w"] / best_w["tops_per_w"], r["tops_per_mm2"] / best_a["tops_per_mm2"]
        print(
            f"| {name} | {r['tops_per_w']:.3g} | {r['tops_per_mm2']:.3g} | {w:.3g} {'yes' if w >= 2.4 else 'NO'} | "
            f"{a:.3g} {'yes' if a >= 40 else 'NO'} | {w / k:.3g} / {a / k / k:.3g} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
