//! Resources files with a mistake the issue names (an unknown type, a key
//! not among the columns, a pointer that does not parse, two resources on
//! one table, a check that does not fit its type, an unknown auth or
//! pagination kind, a cursor field not among the columns), each with the end of the
//! one line that must report it: both binaries refuse them the same way.

/// `(file, what the error ends with)`; the error begins with the file's
/// path.
pub const MISTAKES: [(&str, &str); 8] = [
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n[[resources.orders.columns]]\nname = \"total\"\ntype = \"money\"\n",
        "resource `orders`: column `total`: unknown type `money`: one of bigint, integer, double precision, numeric, boolean, text, timestamptz, date, uuid, jsonb",
    ),
    (
        "[resources.orders]\nkey = \"order_id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n",
        "resource `orders`: `key`: `order_id` is not among its columns (id)",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\nfrom = \"order/id\"\ntype = \"bigint\"\n",
        "resource `orders`: column `id`: `from` \"order/id\" is not a JSON pointer: it starts with `/` (or is empty)",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n[resources.returns]\ntable = \"orders\"\nkey = \"id\"\n[[resources.returns.columns]]\nname = \"id\"\ntype = \"bigint\"\n",
        "resource `returns`: table `orders` is resource `orders`'s too: each resource needs a table of its own",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\npattern = \"^[0-9]+$\"\n",
        "resource `orders`: column `id`: `pattern` is for text columns, not bigint",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n[resources.orders.request.auth]\nkind = \"oauth1\"\n",
        "resource `orders`: `request.auth`: unknown kind `oauth1`: one of bearer, basic, api_key, oauth2",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n[resources.orders.request.pagination]\nkind = \"pages\"\n",
        "resource `orders`: `request.pagination`: unknown kind `pages`: one of none, link, page, offset, cursor, next_url",
    ),
    (
        "[resources.orders]\nkey = \"id\"\n[[resources.orders.columns]]\nname = \"id\"\ntype = \"bigint\"\n[resources.orders.incremental]\nfield = \"updated\"\nparam = \"since\"\n",
        "resource `orders`: `incremental`: `field` `updated` is not among its columns (id): the position is the largest value of a column",
    ),
];

/// Writes each of [`MISTAKES`] to a file of `dir`: `(path, expected line)`,
/// the line as `or_exit` prints a bad `RESOURCES_FILE`.
pub fn write_mistakes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    MISTAKES
        .iter()
        .enumerate()
        .map(|(i, (text, ending))| {
            let path = dir.join(format!("resources-{i}.toml"));
            std::fs::write(&path, text).unwrap();
            let line = format!(
                "error: invalid setting RESOURCES_FILE (--resources-file): {}: {ending}",
                path.display()
            );
            (path, line)
        })
        .collect()
}
