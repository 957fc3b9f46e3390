from components.distiller.component import Distiller

__all__ = ["Distiller"]
