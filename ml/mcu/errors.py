"""What can go wrong with an `mcu-int8` model, one type per failure a user can meet.

`McuFormatError` and subclasses: the bytes (or the arrays) are not a model the integer
interpreter can run exactly as a Cortex-M would. `McuCalibrationError`: the calibration data
cannot fix the activation ranges. `McuInputError`: a batch an app handed in is not pixels.
Caller misuse (a wrong argument type or option) is a plain `ValueError`/`TypeError`.
"""

from __future__ import annotations


class McuError(Exception):
    """Base of every error about an `mcu-int8` model or its input."""


class McuFormatError(McuError):
    """Not a well-formed `mcu-int8` model: bad magic, version, field, length or value."""


class McuTruncated(McuFormatError):
    """The bytes end before the content their header declares."""


class McuChecksumError(McuFormatError):
    """The CRC-32 trailer does not match the bytes (corrupted in storage or transit)."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"checksum mismatch: the export declares CRC-32 {expected:#010x}, "
            f"its bytes have {actual:#010x}"
        )
        self.expected = expected
        self.actual = actual


class McuCalibrationError(McuError):
    """The calibration batch is empty or yields non-finite activations."""


class McuInputError(McuError, ValueError):
    """A batch is not integer pixels of the model's input width and range."""


__all__ = [
    "McuCalibrationError",
    "McuChecksumError",
    "McuError",
    "McuFormatError",
    "McuInputError",
    "McuTruncated",
]
