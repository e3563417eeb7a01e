-- One row per post, as last applied from the raw objects in S3.
CREATE TABLE posts (
    id            BIGINT PRIMARY KEY,
    user_id       BIGINT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    -- Lineage: the raw object (s3://bucket/key) this version of the row came
    -- from, and when the importer fetched it. fetched_at is also the row's
    -- version: an older object never overwrites a newer row.
    source_object TEXT NOT NULL,
    fetched_at    TIMESTAMPTZ NOT NULL,
    -- When this version of the row was written.
    loaded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX posts_user_id_idx ON posts (user_id);
