//! How secrets are shown back: never whole; the last four characters only when the value is
//! long enough that four characters give nothing useful away.

pub fn mask(secret: &str) -> String {
    let count = secret.chars().count();
    if count >= 16 {
        let tail: String = secret.chars().skip(count - 4).collect();
        format!("****{tail}")
    } else {
        "****".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_show_at_most_the_last_four_characters() {
        assert_eq!(mask("shpat_0123456789abcdef"), "****cdef");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask(""), "****");
        assert_eq!(mask("ééééééééééééééé密钥"), "****éé密钥");
    }
}
