"""medcode: train medical-coding language models on policy-generated synthetic notes."""

__version__ = "0.1.0"
