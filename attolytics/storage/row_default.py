"""DEFAULT: in a row, the value of a column the event left out, written as DEFAULT in the INSERT."""


class _Default:
    """In a row, a key the event left out: the column gets its DEFAULT."""

    def __repr__(self):
        return "DEFAULT"


DEFAULT = _Default()
