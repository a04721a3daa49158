fn main() {
    print!("{}", ospkg::crd::crd_yaml().expect("CRD serializes"));
}
