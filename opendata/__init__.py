"""Open data: de-identified, versioned, signed releases of the base libraries (开放数据：去标识化、版本化、签名发布).

- `datasets.yaml` / `datasets.py`: what is published; `builders.py`: how each dataset is read from the libraries;
- `privacy.py`: generalisation, k-anonymity, small-cell suppression, pseudonyms and the privacy gate;
- `formats.py`: Parquet / CSV / JSON, datapackage.json (Frictionless), dcat.jsonld (DCAT-AP);
- `diff.py`: differential extract against the previous release; `signing.py`: the release key and manifest.sig;
- `release.py`: builds a release into a temporary folder and publishes it atomically; `store.py`: reads the layout.
"""
