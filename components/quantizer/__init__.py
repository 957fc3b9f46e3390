from components.quantizer.component import Quantizer

__all__ = ["Quantizer"]
