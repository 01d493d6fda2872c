"""The ground floor every package builds on, importing none of them: model references and Hub loading
(`common.models`), the in-process model cache (`common.cache`), environment settings (`common.env`), a process's
share of a multi-process run (`common.shares`) and text helpers for messages (`common.text`).

`cnet` (generation), `annotators` (condition maps), `train` (fine-tuning) and `webui` (the app) all use these; none
of the four is needed to use them.
"""
