from components.tuner.component import Tuner

__all__ = ["Tuner"]
