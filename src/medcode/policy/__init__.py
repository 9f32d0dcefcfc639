"""The coding policy engine: an encounter's facts in, guideline-correct codes out.

``code(encounter)`` returns a :class:`CodingResult`; see docs/policy.md for the rules.
"""

from medcode.policy.engine import CodingResult, PolicyWarning, Step, code

__all__ = ["CodingResult", "PolicyWarning", "Step", "code"]
