"""How many examples a hypothesis test draws, by the profile in force: `thorough` (what .ci/run
runs) draws what each test asks for; `quick` (a developer's run) a tenth of it, so that
`pytest -m unit` stays a matter of seconds."""

from hypothesis import settings

# Examples a test draws by default under the thorough profile (hypothesis' own default).
THOROUGH_DEFAULT = 100


def examples(thorough: int) -> int:
    """The examples to draw, for a test that draws `thorough` under the thorough profile."""
    return max(10, thorough * settings.default.max_examples // THOROUGH_DEFAULT)
