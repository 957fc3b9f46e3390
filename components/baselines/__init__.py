from components.baselines.component import Baselines

__all__ = ["Baselines"]
