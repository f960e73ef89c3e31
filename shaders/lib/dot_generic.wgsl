// The matvec part decoder of a type without its own: one 4-element group per part,
// through the type's `dq4`. `xv4` is the matvec kernel's input reader.
const PARTS: u32 = GPB;

fn dot_part(b: u32, part: u32, e: u32) -> f32 {
    return dot(dq4(b, part), xv4(e + 4u * part));
}
