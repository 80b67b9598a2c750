//! Cutting text to a size limit without splitting a character.

/// The longest prefix of `text` that is at most `max_bytes` long and ends
/// on a character boundary (all of `text` when it fits).
pub fn prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts `text` to [`prefix`]`(text, max_bytes)` in place; true when
/// something was cut.
pub fn truncate(text: &mut String, max_bytes: usize) -> bool {
    let keep = prefix(text, max_bytes).len();
    let cut = keep < text.len();
    text.truncate(keep);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_a_character_boundary_within_the_limit() {
        assert_eq!(prefix("hello", 10), "hello");
        assert_eq!(prefix("hello", 5), "hello");
        assert_eq!(prefix("hello", 2), "he");
        assert_eq!(prefix("hello", 0), "");
        // "é" is two bytes, "😀" four: a cut inside one drops it whole.
        assert_eq!(prefix("aé", 2), "a");
        assert_eq!(prefix("😀😀", 7), "😀");
        let long = "é".repeat(1000);
        let cut = prefix(&long, 1001);
        assert_eq!(cut.len(), 1000);
    }

    #[test]
    fn truncate_says_whether_it_cut() {
        let mut s = "abcdé".to_owned();
        assert!(!truncate(&mut s, 6));
        assert_eq!(s, "abcdé");
        assert!(truncate(&mut s, 5));
        assert_eq!(s, "abcd");
    }
}
