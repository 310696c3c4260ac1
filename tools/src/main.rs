//! The `kimp` command.

fn main() {
    println!("kimp");
}
