"""The `legal-ru` task's home: extraction from Russian commercial (arbitrazh) court decisions, `legal` in Russian.

- `generator.py`  synthetic decisions with gold fields: train and validation on the fly, and the stored eval sets
                  (`python -m tasks.legal_ru.generator ...`, as search_spaces/legal-ru.yaml records for each set)
- `russian.py`    the grammar the decisions need (cases of names and legal forms, sums in words, ИНН / ОГРН)
- `phrases.py`    the names, subjects and sentences the generator writes with
- `rules.py`      the rule-based reference (regular expressions): the row every model must beat
- `eval_sets/`    the stored eval sets (frozen, digest-checked)

Its configuration (fields, data, recipe, profiles, search space) is data: search_spaces/legal-ru.yaml.
"""
