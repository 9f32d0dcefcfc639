"""The coding service: a REST API (FastAPI), FHIR R4 output and a review page for coders.

``create_app(coder)`` in :mod:`medcode.serve.app` builds the application; ``medcode serve``
(:mod:`medcode.serve.commands`) runs it under uvicorn. Nothing here imports FastAPI at
``import medcode.serve`` time: the ``serve`` extra is only needed to run the service.
"""
