"""`mos-search demo`: the whole chain on the embedded defaults, each stage resumable.

corpus -> neuron-wise MoS supernet (the pretrained one copied, or trained) -> latency profile of
the CPU ONNX Runtime device -> predictor -> NSGA-II search (validation loss vs predicted latency)
-> verified front -> report -> export of the best model under the budget -> a few test sentences
translated with ONNX Runtime alone. Every stage writes into one run folder (`folder.DemoFolder`)
and is skipped (or resumed) when run again.

- `folder`: the demo's sizes (`DemoConfig`) and the run folder's layout.
- `stages`: one function per stage, by the stage's name, and the test that says it is done.
- `run`: the story, the stages in order with their wall times (`demo.json`) and the summary.

May import: the core modules, `arch`, `space`, `data`, `models`, `training`, `oracle`, `costs`,
`search`, `deploy` and the lower packages: it runs every stage below the CLI.
"""

from mos_search.demo.folder import DEVICE, DemoConfig, DemoFolder, default_pretrained
from mos_search.demo.run import run_demo

__all__ = ["DEVICE", "DemoConfig", "DemoFolder", "default_pretrained", "run_demo"]
