-- Evaluate runs: a run that measures the checkpoint of its parent run.
ALTER TABLE runs DROP CONSTRAINT runs_kind_check;
ALTER TABLE runs ADD CONSTRAINT runs_kind_check CHECK (kind IN ('train', 'evaluate'));
