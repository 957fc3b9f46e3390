from components.pruner.component import Pruner

__all__ = ["Pruner"]
