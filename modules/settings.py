"""The run settings every training component receives from the pipeline (as custom_config)."""
import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, List, Optional


@dataclasses.dataclass
class RunSettings:
    label: str
    drop: List[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    strategy: str = "none"  # see modules.training.STRATEGIES
    # ModelConfig fields set on the command line; they win over tuned and default values.
    model_overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Where resumable state lives across executions (checkpoints, the tuner's trials).
    work_dir: Optional[str] = None
    verbose: bool = True

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Dict[str, Any]]) -> "RunSettings":
        if not custom_config or "label" not in custom_config:
            raise ValueError("custom_config must hold the run settings (at least 'label')")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in custom_config.items() if k in names})

    @classmethod
    def from_exec_properties(cls, exec_properties: Dict[str, Any]) -> "RunSettings":
        """From a custom component's `custom_config` execution property (JSON text)."""
        return cls.from_custom_config(json.loads(exec_properties["custom_config"]))

    def to_custom_config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def work_subdir(self, component: str, *keys: Any) -> Optional[str]:
        """A directory that is the same whenever `keys` are, so a rerun finds its state."""
        if not self.work_dir:
            return None
        digest = hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode())
        return os.path.join(self.work_dir, component, digest.hexdigest()[:16])
