// @generated automatically by Diesel CLI.

diesel::table! {
    applied_objects (source_object, sha256) {
        source_object -> Text,
        sha256 -> Text,
        message_id -> Text,
        fetched_at -> Timestamptz,
        records -> Int8,
        inserted -> Int8,
        updated -> Int8,
        unchanged -> Int8,
        superseded -> Int8,
        quarantined -> Int8,
        applied_at -> Timestamptz,
        trace_id -> Nullable<Text>,
        resource -> Text,
    }
}

diesel::table! {
    comments (id) {
        id -> Int8,
        post_id -> Int8,
        name -> Text,
        email -> Text,
        body -> Text,
        source_object -> Text,
        fetched_at -> Timestamptz,
        loaded_at -> Timestamptz,
    }
}

diesel::table! {
    posts (id) {
        id -> Int8,
        user_id -> Int8,
        title -> Text,
        body -> Text,
        source_object -> Text,
        fetched_at -> Timestamptz,
        loaded_at -> Timestamptz,
    }
}

diesel::table! {
    quarantined_records (source_object, sha256, record_index) {
        source_object -> Text,
        sha256 -> Text,
        record_index -> Int8,
        reason -> Text,
        raw -> Text,
        quarantined_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    applied_objects,
    comments,
    posts,
    quarantined_records,
);
