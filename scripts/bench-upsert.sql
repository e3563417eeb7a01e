-- What the upsert costs when a newer object repeats rows unchanged: the
-- statement before and after the lineage change, on 100,000 rows of about
-- 1 kB, one after the other, each in a transaction rolled back. Run it on
-- a scratch database (it creates and drops `bposts`), three times to
-- alternate them:
--
--   for run in 1 2 3; do psql "$SCRATCH_DATABASE_URL" -f scripts/bench-upsert.sql; done
--
-- Figures and context: docs/benchmark.md.
\timing on
DROP TABLE IF EXISTS bposts;
CREATE TABLE bposts (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
  source_object TEXT NOT NULL, fetched_at TIMESTAMPTZ NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX ON bposts (user_id);
INSERT INTO bposts (id, user_id, title, body, source_object, fetched_at)
SELECT g, g/10+1, 'title ' || g, repeat('body text ', 100) || g, 's3://b/old', '2026-01-01' FROM generate_series(1,100000) g;
VACUUM ANALYZE bposts;
CREATE TEMP TABLE incoming AS SELECT g AS id, g/10+1 AS user_id, 'title ' || g AS title, repeat('body text ', 100) || g AS body FROM generate_series(1,100000) g;
\echo old
BEGIN;
WITH w AS (INSERT INTO bposts AS p (id, user_id, title, body, source_object, fetched_at)
  SELECT id, user_id, title, body, 's3://b/new', '2026-02-01' FROM incoming
  ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, title = EXCLUDED.title, body = EXCLUDED.body,
    source_object = EXCLUDED.source_object, fetched_at = EXCLUDED.fetched_at, loaded_at = now()
  WHERE p.fetched_at <= EXCLUDED.fetched_at
    AND (p.user_id, p.title, p.body) IS DISTINCT FROM (EXCLUDED.user_id, EXCLUDED.title, EXCLUDED.body)
  RETURNING (xmax = 0) AS inserted) SELECT count(*) FROM w;
ROLLBACK;
\echo new
BEGIN;
WITH w AS (INSERT INTO bposts AS p (id, user_id, title, body, source_object, fetched_at)
  SELECT id, user_id, title, body, 's3://b/new', '2026-02-01' FROM incoming
  ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, title = EXCLUDED.title, body = EXCLUDED.body,
    source_object = EXCLUDED.source_object, fetched_at = EXCLUDED.fetched_at,
    loaded_at = CASE WHEN (p.user_id, p.title, p.body) IS DISTINCT FROM (EXCLUDED.user_id, EXCLUDED.title, EXCLUDED.body) THEN now() ELSE p.loaded_at END
  WHERE p.fetched_at < EXCLUDED.fetched_at
     OR (p.fetched_at = EXCLUDED.fetched_at AND (p.user_id, p.title, p.body) IS DISTINCT FROM (EXCLUDED.user_id, EXCLUDED.title, EXCLUDED.body))
  RETURNING (xmax = 0) AS inserted, (loaded_at = now()) AS changed) SELECT count(*) FROM w;
ROLLBACK;
DROP TABLE bposts;
