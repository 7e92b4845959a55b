"""The `legal` task's home: extraction from commercial (arbitrazh) court decisions.

- `generator.py`  synthetic decisions with gold fields: train and validation on the fly, and the stored eval sets
                  (`python -m tasks.legal.generator ...`, as search_spaces/legal.yaml records for each set)
- `rules.py`      the rule-based reference (regular expressions): the row every model must beat
- `eval_sets/`    the stored eval sets (frozen, digest-checked) and the expectations `harness regress` keeps beside them

Its configuration (fields, data, recipe, profiles, search space) is data: search_spaces/legal.yaml.
"""
