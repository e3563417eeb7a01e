-- One row per comment, as last applied from the raw objects in S3.
-- No foreign key to posts: objects of the two resources arrive in any
-- order, so a comment may be applied before its post.
CREATE TABLE comments (
    id            BIGINT PRIMARY KEY,
    post_id       BIGINT NOT NULL,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    body          TEXT NOT NULL,
    -- Lineage, as in posts: the raw object (s3://bucket/key) this version
    -- of the row came from, when the importer fetched it (the row's
    -- version), and when this version was written.
    source_object TEXT NOT NULL,
    fetched_at    TIMESTAMPTZ NOT NULL,
    loaded_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX comments_post_id_idx ON comments (post_id);
