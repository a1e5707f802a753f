-- Charts read a run's points of one key in step order, with their values. A primary key that
-- includes the value answers those reads from the index alone, in order, instead of visiting
-- one heap page per point (a run's points are spread over the table as runs log together).
ALTER TABLE metrics DROP CONSTRAINT metrics_pkey, ADD PRIMARY KEY (run_id, key, step) INCLUDE (value);
