-- The ledger: one row per object applied to posts, written in the same
-- transaction as the object's rows. A second application of the same bytes
-- (an SQS redelivery, a second message, a replay) finds its row here and
-- changes nothing. The key includes the sha256, so new bytes written at an
-- old key are applied again.
CREATE TABLE applied_objects (
    source_object TEXT NOT NULL,               -- s3://bucket/key
    sha256        TEXT NOT NULL,               -- of the bytes applied
    message_id    TEXT NOT NULL,               -- the SQS message that applied them
    fetched_at    TIMESTAMPTZ NOT NULL,        -- the version of the object's rows
    records       BIGINT NOT NULL,             -- elements in the array
    inserted      BIGINT NOT NULL DEFAULT 0,
    updated       BIGINT NOT NULL DEFAULT 0,
    unchanged     BIGINT NOT NULL DEFAULT 0,   -- same content, or newer rows already there
    superseded    BIGINT NOT NULL DEFAULT 0,   -- ids that occur again later in the object
    quarantined   BIGINT NOT NULL DEFAULT 0,   -- records in quarantined_records
    applied_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source_object, sha256)
);

-- Records that are not valid posts, kept so they can be fixed and replayed.
CREATE TABLE quarantined_records (
    source_object  TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    record_index   BIGINT NOT NULL,            -- position in the object's array, from 0
    reason         TEXT NOT NULL,              -- names the field at fault
    raw            TEXT NOT NULL,              -- the record's JSON text, exactly as received
    quarantined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source_object, sha256, record_index),
    FOREIGN KEY (source_object, sha256) REFERENCES applied_objects ON DELETE CASCADE
);
