"""The DAG's jobs, one file each; ``python -m ibtpo <job>`` runs one (see ``ibtpo/__main__.py``)."""
