from components.data_validator.component import DataValidator

__all__ = ["DataValidator"]
