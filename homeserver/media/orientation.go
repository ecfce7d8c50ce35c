package media

import (
	"encoding/binary"
	"image"
	"io"
)

// Photos from phones are usually stored sideways, with an EXIF
// Orientation tag saying how to turn them. Go's JPEG decoder ignores the
// tag and thumbnails drop the EXIF data, so the thumbnailer applies it
// itself; otherwise portrait photos would show up lying on their side.

// jpegOrientation reads the EXIF Orientation (1-8) of a JPEG; 1 (as
// stored) when there is none or it cannot be read.
func jpegOrientation(r io.Reader) int {
	var soi [2]byte
	if _, err := io.ReadFull(r, soi[:]); err != nil || soi != [2]byte{0xFF, 0xD8} {
		return 1
	}
	for i := 0; i < 32; i++ { // APP1 comes first; do not walk the whole file
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil || hdr[0] != 0xFF {
			return 1
		}
		marker, length := hdr[1], int(binary.BigEndian.Uint16(hdr[2:]))
		if marker == 0xDA || length < 2 { // start of scan: no more metadata
			return 1
		}
		if marker != 0xE1 {
			if _, err := io.CopyN(io.Discard, r, int64(length-2)); err != nil {
				return 1
			}
			continue
		}
		seg := make([]byte, length-2)
		if _, err := io.ReadFull(r, seg); err != nil {
			return 1
		}
		if o := exifOrientation(seg); o != 0 {
			return o
		}
	}
	return 1
}

// exifOrientation finds the Orientation tag in an APP1 segment's body; 0
// when it is not an EXIF segment or has no valid tag.
func exifOrientation(seg []byte) int {
	if len(seg) < 14 || string(seg[:6]) != "Exif\x00\x00" {
		return 0
	}
	tiff := seg[6:]
	var bo binary.ByteOrder
	switch string(tiff[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0
	}
	ifd := int(bo.Uint32(tiff[4:8]))
	if ifd < 8 || ifd+2 > len(tiff) {
		return 0
	}
	n := int(bo.Uint16(tiff[ifd:]))
	for i := 0; i < n; i++ {
		e := ifd + 2 + 12*i
		if e+12 > len(tiff) {
			return 0
		}
		if bo.Uint16(tiff[e:]) == 0x0112 && bo.Uint16(tiff[e+2:]) == 3 { // Orientation, SHORT
			if o := int(bo.Uint16(tiff[e+8:])); o >= 1 && o <= 8 {
				return o
			}
			return 0
		}
	}
	return 0
}

// swapsAxes reports whether an orientation turns the image by 90°, so
// that its displayed width is its stored height.
func swapsAxes(orientation int) bool { return orientation >= 5 && orientation <= 8 }

// orient turns an image as stored into the image as displayed.
func orient(img image.Image, orientation int) image.Image {
	if orientation <= 1 || orientation > 8 {
		return img
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if swapsAxes(orientation) {
		dw, dh = h, w
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for dy := 0; dy < dh; dy++ {
		for dx := 0; dx < dw; dx++ {
			var sx, sy int
			switch orientation {
			case 2: // mirrored
				sx, sy = w-1-dx, dy
			case 3: // upside down
				sx, sy = w-1-dx, h-1-dy
			case 4: // mirrored upside down
				sx, sy = dx, h-1-dy
			case 5: // mirrored, turned
				sx, sy = dy, dx
			case 6: // to be turned clockwise
				sx, sy = dy, h-1-dx
			case 7: // mirrored, turned the other way
				sx, sy = w-1-dy, h-1-dx
			case 8: // to be turned anticlockwise
				sx, sy = w-1-dy, dx
			}
			dst.Set(dx, dy, img.At(b.Min.X+sx, b.Min.Y+sy))
		}
	}
	return dst
}
