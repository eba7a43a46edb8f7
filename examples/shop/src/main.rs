//! The reference shop.

fn main() -> anyhow::Result<()> {
    Ok(())
}
