// @generated automatically by Diesel CLI.

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
