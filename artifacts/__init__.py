"""Deterministic artifacts: atomic writes, file digests, PNG figures and the package version.

Generic helpers with no arithmetic and no project imports, so that every layer (golden, tasks, hdl, gen, sim,
train, sweep, bench, the CLI and the benchmark scripts) may use them without pulling in anything heavier:
`nvmlstm.artifacts.files` needs the standard library only, `nvmlstm.artifacts.png` imports matplotlib only when
a figure is saved, `nvmlstm.artifacts.version` reads the installed distribution's metadata,
`nvmlstm.artifacts.progress` gives progress bars that stay readable in a log file and heartbeat lines for long
steps (the standard library, plus tqdm when a bar is made).
"""

if __name__ != "nvmlstm.artifacts":  # one name per module (README, Layout)
    raise ImportError(
        f"the artifacts/ folder is the package nvmlstm.artifacts; import nvmlstm.artifacts, not {__name__}"
    )
