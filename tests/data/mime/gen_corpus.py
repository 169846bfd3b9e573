# ruff: noqa: E501, W291, W293  (message templates are data: long lines and trailing blanks are meant)
"""Generate the MIME corpus (bytes written exactly; '\n' in templates becomes CRLF unless LF-only)."""

import base64
import pathlib

D = pathlib.Path(__file__).resolve().parent


def w(name, text, crlf=True, raw=None):
    data = raw if raw is not None else text.encode("utf-8", "surrogateescape")
    if raw is None and crlf:
        data = data.replace(b"\n", b"\r\n")
    (D / name).write_bytes(data)


w(
    "01_plain.eml",
    """Return-Path: <alice@example.com>
Received: from mx.example.com (mx.example.com [192.0.2.1])
\tby mail.example.org with ESMTP id 12345
\tfor <bob@example.org>; Mon, 2 Jan 2023 10:00:00 +0000
From: Alice Example <Alice@Example.COM>
To: Bob <bob@example.org>, carol@example.net
Cc: dave@example.net
Subject: Hello there
Date: Mon, 2 Jan 2023 10:00:00 +0100
Message-ID: <plain-1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hi Bob,

This is a plain message.
-- 
Alice
""",
)

w(
    "02_alternative.eml",
    """From: "Shop" <news@shop.example>
To: user@example.org
Subject: =?UTF-8?Q?Caf=C3=A9_news?=
Date: Tue, 3 Jan 2023 11:22:33 -0500
Message-ID: <alt-2@shop.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="==alt=="

This is a multi-part message in MIME format.

--==alt==
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait is =E2=82=AC3.50 today.
A very long line that is soft-broken with quoted printable encoding so that=
 it continues here.

--==alt==
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Caf=C3=A9 au lait is <b>=E2=82=AC3.50</b> today.</p></body></html>

--==alt==--

epilogue text
""",
)

pdf = base64.encodebytes(b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"\n%%EOF\n").decode()
png = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100).decode()
w(
    "03_mixed_attach.eml",
    f"""From: Alice <alice@example.com>
To: bob@example.org
Subject: Report attached
Date: Wed, 4 Jan 2023 09:00:00 +0000
Message-ID: <mixed-3@example.com>
In-Reply-To: <prev-1@example.org>
References: <root-0@example.org> <prev-1@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-boundary"

--outer-boundary
Content-Type: multipart/alternative; boundary="inner-boundary"

--inner-boundary
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: 8bit

Please find the report attached. Gr\xfc\xdfe
--inner-boundary
Content-Type: text/html; charset=ISO-8859-1

<p>Please find the report attached.</p>
--inner-boundary--

--outer-boundary
Content-Type: application/pdf; name="report.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="report.pdf"; size=800
Content-Description: Quarterly report
Content-Language: en, de
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

{pdf}
--outer-boundary
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <logo@example.com>
Content-Disposition: inline
Content-Location: http://example.com/logo.png

{png}
--outer-boundary--
""".replace("Gr\xfc\xdfe", "Gr\udcfc\udcdfe"),
)

w(
    "04_rfc822.eml",
    """From: forwarder@example.com
To: bob@example.org
Subject: Fwd: original
Date: Thu, 5 Jan 2023 12:00:00 +0000
Message-ID: <fwd-4@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=BOUND

--BOUND
Content-Type: text/plain

See the forwarded message.

--BOUND
Content-Type: message/rfc822
Content-Disposition: attachment; filename="original.eml"

From: "Orig Sender" <orig@example.net>
To: forwarder@example.com
Subject: original
Date: Wed, 4 Jan 2023 08:00:00 +0000
Message-ID: <orig-1@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Original text.
--inner
Content-Type: text/html; charset=utf-8

<b>Original</b> text.
--inner--

--BOUND--
""",
)

w(
    "05_signed.eml",
    """From: signer@example.com
To: bob@example.org
Subject: Signed message
Date: Fri, 6 Jan 2023 13:00:00 +0000
Message-ID: <signed-5@example.com>
MIME-Version: 1.0
Content-Type: multipart/signed; micalg=pgp-sha256;
 protocol="application/pgp-signature"; boundary="sig-b"

This is an OpenPGP/MIME signed message (RFC 4880 and 3156)
--sig-b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Signed body.
--sig-b
Content-Type: application/pgp-signature; name="signature.asc"
Content-Description: OpenPGP digital signature
Content-Disposition: attachment; filename="signature.asc"

-----BEGIN PGP SIGNATURE-----

iQEzBAEBCAAdFiEEabcdefghijklmnopqrstuvwxyz0123456789
=abcd
-----END PGP SIGNATURE-----

--sig-b--
""",
)

w(
    "06_no_boundary.eml",
    """From: a@example.com
To: b@example.org
Subject: multipart without boundary
MIME-Version: 1.0
Content-Type: multipart/mixed

--something
Content-Type: text/plain

text
--something--
""",
)

w(
    "07_boundary_absent.eml",
    """From: a@example.com
To: b@example.org
Subject: boundary never appears
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="never-seen"

Just some text, no parts at all.
Second line.
""",
)

w(
    "08_broken_mime.eml",
    """From: a@example.com
To: b@example.org
Subject: broken MIME
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="brk"

garbage preamble
--brk

part without headers
--brk
Content-Type: text/plain
no blank line after headers
still the header?

body of part 2
--brk
Content-Type: multipart/alternative; boundary="inner-never-closed"

--inner-never-closed
Content-Type: text/plain

inner text, never closed
--brk
Content-Type: text/plain

last part, outer never closed
""",
)

w(
    "09_bad_charset.eml",
    """From: a@example.com
To: b@example.org
Subject: bad charsets
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cs"

--cs
Content-Type: text/plain; charset=x-unknown-charset
Content-Transfer-Encoding: 8bit

Unknown charset with 8-bit bytes: \udce9\udce8
--cs
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: 8bit

Invalid UTF-8: \udcff\udcfe ok
--cs
Content-Type: text/html; charset=windows-1252

<p>Smart quotes \udc93hi\udc94</p>
--cs--
""",
)

w(
    "10_encoded_words.eml",
    """From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <joerg@example.de>
To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>, "=?utf-8?q?Zo=C3=AB?=" <zoe@example.com>
Subject: =?UTF-8?B?w4RwZmVs?= =?UTF-8?Q?_und_Birnen?= plain
 =?iso-8859-1?q?=E9t=E9?=
Date: Sat, 7 Jan 2023 14:00:00 +0100
Message-ID: <ew-10@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="ew"

--ew
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SGVsbG8gd8O2cmxkIQo=
--ew
Content-Type: application/octet-stream; name="=?UTF-8?Q?R=C3=A9sum=C3=A9.txt?="
Content-Disposition: attachment; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.txt
Content-Transfer-Encoding: base64

SGVsbG8=
--ew
Content-Type: application/octet-stream
Content-Disposition: attachment;
 filename*0="very_long_";
 filename*1="file_name.bin"
Content-Transfer-Encoding: base64

AAECAw==
--ew--
""",
)

w(
    "11_utf8_headers.eml",
    """From: Jörg Müller <joerg@example.de>
To: Zoë <zoe@example.com>
Subject: Grüße aus Köln ☕
Date: Sun, 8 Jan 2023 15:00:00 +0100
Message-ID: <utf8-11@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Grüße ☕
""",
)

w(
    "12_addresses.eml",
    """From: "Doe, John" <John.Doe@Example.COM> (comment here)
Sender: secretary@example.com (The Secretary)
Reply-To: replies@example.com
To: undisclosed-recipients:;
Cc: Team: a@example.com, "B, b" <b@example.org>;, plain@example.net, <@route1,@route2:routed@example.com>
Bcc:
Subject: odd addresses
Date: bogus date here
Message-ID: <addr-12@example.com> (comment)
In-Reply-To: <a@x> <b@y>
References: <r1@x>
 <r2@y>  <r3@z>

body
""",
)

w(
    "13_no_trailing_newline.eml",
    """From: a@example.com
To: b@example.org
Subject: no trailing newline
Content-Type: text/plain

line one
line two without newline""",
)

w(
    "14_lf_only.eml",
    """From: a@example.com
To: b@example.org
Subject: LF only
Date: Mon, 9 Jan 2023 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="lf"

--lf
Content-Type: text/plain

LF text line 1
LF text line 2

--lf
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAECAwQF
--lf--
""",
    crlf=False,
)

recv = "".join(
    f"Received: from relay{i}.example.net (relay{i}.example.net [198.51.100.{i % 250}])\n\tby relay{i + 1}.example.net with ESMTPS id ABCDEF{i:04d}; Mon, 9 Jan 2023 10:{i % 60:02d}:00 +0000\n"
    for i in range(150)
)
refs = "References: " + "\n ".join(f"<ref{i}.thread@lists.example.org>" for i in range(200)) + "\n"
w(
    "15_huge_header.eml",
    recv
    + refs
    + "X-Long: "
    + "x" * 5000
    + """
From: list@lists.example.org
To: user@example.org
Subject: Re: Re: Fwd: [list] huge header (fwd)
Date: Mon, 9 Jan 2023 10:00:00 +0000

small body
""",
)

w(
    "16_empty_body.eml",
    """From: a@example.com
To: b@example.org
Subject: empty body

""",
)

w(
    "17_headers_only.eml",
    """From: a@example.com
To: b@example.org
Subject: headers only, no blank line
""",
)

w("18_empty.eml", "", raw=b"")

w(
    "19_digest.eml",
    """From: digest@lists.example.org
To: user@example.org
Subject: Digest
MIME-Version: 1.0
Content-Type: multipart/digest; boundary="dig"

--dig

From: m1@example.com
Subject: first

first message
--dig

From: m2@example.com
Subject: second
Content-Type: text/plain

second message
--dig
Content-Type: text/plain

explicit text part in digest
--dig--
""",
)

w(
    "20_nested_multipart.eml",
    """From: a@example.com
To: b@example.org
Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="L1"

--L1
Content-Type: multipart/related; boundary="L2"; type="multipart/alternative"

--L2
Content-Type: multipart/alternative; boundary="L3"

--L3
Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes

deep text
--L3
Content-Type: text/html; charset=utf-8

<img src="cid:img1">
--L3--
--L2
Content-Type: image/gif
Content-ID: <img1>
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--L2--
--L1
Content-Type: text/csv; name=data.csv
Content-Disposition: attachment; filename=data.csv

a,b
1,2
--L1--
""",
)

w(
    "21_quoted_special.eml",
    """From: "Quote \\"Q\\" Back\\\\slash" <q@example.com>
To: b@example.org
Subject:   Re: "quoted" \\back\\slash\\ and\ttab   double  spaces
 folded\tcontinuation
Date: Tue, 10 Jan 2023 10:00:00 +0000
Message-ID:
 <folded-21@example.com>
Content-Type: TEXT/Plain; CHARSET=ISO-8859-1; Format="flowed"

body
""",
)

w(
    "22_params.eml",
    """From: a@example.com
To: b@example.org
Subject: parameters
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="p"

--p
Content-Type: application/octet-stream;
 name*0="long";
 name*1="name.dat"
Content-Disposition: ATTACHMENT; FileName="x.dat"; creation-date="Tue, 10 Jan 2023 10:00:00 +0000"

data
--p
Content-Type: text/plain; charset=us-ascii (comment); x-param = "spaced value"

text
--p
Content-Type: text
Content-Transfer-Encoding: 7BIT

no subtype
--p
Content-Type: ;;;

empty type
--p--
""",
)

w(
    "23_part_no_headers.eml",
    """From: a@example.com
To: b@example.org
Subject: parts without headers
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="nh"

--nh

first part has no headers
--nh
Content-Transfer-Encoding: BASE64

dGV4dA==
--nh
--nh--
""",
)

w(
    "24_cte.eml",
    """From: a@example.com
To: b@example.org
Subject: transfer encodings
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cte"

--cte
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAEC
Aw=!=
 BAUG
--cte
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

soft=
break and =3D equals and bad =ZZ escape=20
--cte
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-uuencode

begin 644 f
#86)C
`
end
--cte
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

raw binary \udc80\udcff
--cte--
""",
)

w(
    "25_duplicate_headers.eml",
    """From: first@example.com
From: second@example.com
To: b@example.org
Subject: first subject
Subject: second subject
Message-ID: <dup-1@example.com>
Message-ID: <dup-2@example.com>

body
""",
)

w(
    "26_rfc822_top.eml",
    """From: a@example.com
To: b@example.org
Subject: top-level message/rfc822
Content-Type: message/rfc822

From: inner@example.com
Subject: inner

inner body
""",
)

w(
    "27_rfc822_base64.eml",
    """From: a@example.com
To: b@example.org
Subject: base64 encoded rfc822
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b64"

--b64
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

RnJvbTogeEB5DQpTdWJqZWN0OiBoaQ0KDQpib2R5DQo=
--b64--
""",
)

w(
    "28_mixed_line_endings.eml",
    "",
    raw=(
        b"From: a@example.com\r\nTo: b@example.org\nSubject: mixed endings\r\n"
        b'Content-Type: multipart/mixed; boundary="m"\n\r\n--m\nContent-Type: text/plain\r\n\nline1\r\nline2\nline3\r\n--m--\n'
    ),
)

w(
    "29_boundary_prefix.eml",
    """From: a@example.com
To: b@example.org
Subject: boundary prefixes
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="abc"

--abc
Content-Type: multipart/alternative; boundary="abcdef"

--abcdef
Content-Type: text/plain

alt one
--abcdef   trailing garbage
Content-Type: text/html

alt two
--abc
Content-Type: text/plain

outer two, inner closed by outer boundary
--abc--trailing
ignored epilogue
""",
)

w(
    "30_empty_parts.eml",
    """From: a@example.com
To: b@example.org
Subject: empty parts
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="e"

--e
--e

--e
Content-Type: text/plain

--e--
""",
)

w(
    "31_group_from.eml",
    """From: Undisclosed:;
To: list: ;
Cc: "" <empty-name@example.com>, noatsign, @nolocal.example, local@
Subject: Re: [PATCH] FWD: Re: group in from (fwd)
Date: 11 Jan 2023 10:00 GMT

body
""",
)

w(
    "32_8bit_body_latin1.eml",
    """From: a@example.com
To: b@example.org
Subject: latin-1 body, no charset
Content-Transfer-Encoding: 8bit

Caf\udce9 cr\udce8me br\udcfbl\udce9e
""",
)

w(
    "33_preamble_epilogue.eml",
    """From: a@example.com
To: b@example.org
Subject: preamble and epilogue
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=pe

preamble line 1
preamble line 2

--pe
Content-Type: text/plain

only part

--pe--

epilogue line 1
epilogue line 2
""",
)

w(
    "34_html_only.eml",
    """From: "News" <news@example.com>
To: b@example.org
Subject: html only
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><head><style>p {color: red}</style></head><body><p>Hello&nbsp;<b>W=C3=B6rld</b></p>=
<script>var x=3D1;</script></body></html>
""",
)

w(
    "35_header_whitespace.eml",
    """From : a@example.com
To:b@example.org
Subject:
Date:    Mon, 16 Jan 2023 10:00:00 +0000   
X-Empty:
Content-Type: text/plain; charset="us-ascii"
Content-Language: en
Content-Disposition: inline; filename="note.txt"

body
""",
)
print("ok")

w(
    "36_quoting.eml",
    """From: "one \\"q" <a@x.example>, "two \\"q\\" x" <b@x.example>, "back\\\\slash" <c@x.example>, "five \\\\\\\\\\"\\"\\"x" <d@x.example>, "  lead  trail  " <e@x.example>, "tab\there" <f@x.example>, Plain Words  Spaced <g@x.example>
To: "john doe"@example.com, <>, @, ,, Name Only, <only@angle.example>
Cc: =?utf-8?q?broken <x@y.example>, a@b.example (first) (second), "q" (c) <r@s.example>
Bcc: x@y.example,
Reply-To: group: one@x.example (One), two@x.example ; , after@x.example
Subject: say "hi" to a\\b
Date: "quoted" date \\ with backslash
In-Reply-To: <"q"@x.example>
Message-ID: <a"b@x.example>

body
""",
)

w(
    "37_rfc822_edge.eml",
    """From: a@example.com
To: b@example.org
Subject: rfc822 edge cases
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="o"

--o
Content-Type: message/rfc822

Subject: inner with blank line then boundary

--o
Content-Type: message/rfc822

Subject: inner with body

x
--o
Content-Type: multipart/alternative; boundary="i"

--i
Content-Type: text/plain
--o
Content-Type: message/rfc822

--o
Content-Type: message/rfc822
--o--
""",
)

w(
    "38_epilogue_boundary.eml",
    """From: a@example.com
To: b@example.org
Subject: boundary reuse in epilogue
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="out"

--out
Content-Type: multipart/alternative; boundary="in"

--in
Content-Type: text/plain

a
--in--
epilogue of in
--in
Content-Type: text/plain

after close
--out  
Content-Type: text/plain

b
--out--  
trailing
""",
)

w(
    "39_subject_prefixes.eml",
    """From: a@example.com
Subject: =?utf-8?q?Re=3A?= [list] RE: Fwd:  Re[2]:   Hello   World (fwd) (FWD)
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SGVsbG8gd29ybGQ=
""",
)

w(
    "40_dup_mime_headers.eml",
    """From: a@example.com
Subject: duplicate MIME headers
Date: "a" "b" "c"
Message-ID: <\\\\\\\\\\@x>
In-Reply-To: \\\\\\\\
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Type: text/plain; charset=iso-8859-1
Content-ID: <first@x>
Content-ID: <second@x>
Content-Transfer-Encoding: quoted-printable
Content-Transfer-Encoding: base64
Content-Description: =?utf-8?q?Caf=C3=A9?= d\\"esc
Content-Location:
 http://example.com/a
  /b

caf=C3=A9
""",
)

w(
    "41_deep_nesting.eml",
    "From: a@example.com\nSubject: deep\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b0\n\n"
    + "".join(f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(120))
    + "--b120\nContent-Type: text/plain\n\ndeep leaf\n"
    + "".join(f"--b{i}--\n" for i in range(120, -1, -1)),
)

w(
    "42_address_zoo.eml",
    """From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>
Sender: Joe Q. Public <john.q.public@example.com>
Reply-To: Mary Smith <@node.test:mary@example.net>, jdoe@test   . example
To: "a@b" <c@d.example>, a@b.example <e@f.example>, <g@h.example>, John Smith <john@x.example>garbage
Cc: user@[192.0.2.1], "quoted\\"local"@example.com, a.@b.example, x@y.z.,
 =?utf-8?q?J=C3=B6rg?= <joerg@example.de>, "=?utf-8?q?in_quotes?=" <iq@example.com>, Jörg Raw <raw@example.de>
Bcc: <no-close@example.com, outer: inner: x@y.example; ;, (only comment), Name <>
Subject: address zoo
Date: Mon, 16 Jan 2023 10:00:00 +0000

body
""",
)

w(
    "43_content_type_zoo.eml",
    """From: a@example.com
Subject: content-type zoo
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="zoo"

--zoo
Content-Type: text/plain (comment); charset=utf-8 (c2)
Content-Disposition: attachment;
Content-Language: en-US (comment), de

a
--zoo
Content-Type: text / plain ; charset = "quoted \\"x\\"" ; foo ; =bar; dup=1; dup=2;
Content-Disposition: inline; filename=

b
--zoo
Content-Type: TEXT/PLAIN;CHARSET=UTF-8;NAME="Grüße.txt"
Content-Disposition: attachment; filename*=iso-8859-1'de'Gr%FC%DFe.txt

c
--zoo
Content-Type:
Content-Transfer-Encoding:

d
--zoo
Content-Type: text/plain; charset=
Content-Transfer-Encoding: quoted-printable garbage
Content-ID: <id with spaces> (comment)
Content-Description:   spaced   description   

e
--zoo
Content-Type: application/x-thing; a*0*=us-ascii'en'x%20y; a*1="z"; b*0=one; b*2=three

f
--zoo--
""",
)

w(
    "44_boundary_zoo.eml",
    """From: a@example.com
Subject: boundary zoo
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="with space and (special) chars=?"

--with space and (special) chars=?
Content-Type: multipart/alternative;
 boundary=0123456789012345678901234567890123456789012345678901234567890123456789TAIL

--0123456789012345678901234567890123456789012345678901234567890123456789TAIL
Content-Type: text/plain

long one
--0123456789012345678901234567890123456789012345678901234567890123456789XXXX
Content-Type: text/plain

long two (prefix match on 70 chars?)
--0123456789012345678901234567890123456789012345678901234567890123456789TAIL--
--with space and (special) chars=?\t
Content-Type: text/plain

tab after boundary
--with space and (special) chars=?--
""",
)

w(
    "45_rfc822_nomime.eml",
    """From: a@example.com
Subject: inner without MIME-Version
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="n"

--n
Content-Type: message/rfc822

From: "Inner, Name" <inner@example.com>
To: x@example.com, group: y@example.com;
Subject: inner
Content-Transfer-Encoding: base64
Content-Description: ignored without MIME-Version?

aW5uZXI=
--n
Content-Type: message/rfc822

From: inner2@example.com
Subject: inner2 with content-type
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

aW5uZXI=
--n
Content-Type: message/RFC822

Subject: inner3 with nested multipart digest
MIME-Version: 1.0
Content-Type: multipart/digest; boundary=d

--d

Subject: digest member

member body
--d--
--n--
""",
)

w(
    "46_header_oddities.eml",
    """ leading continuation line
Subject:x
FROM:UPPER@EXAMPLE.COM
To:\t\tb@example.org\t
Cc: 
Date:
Message-ID: no angle brackets
In-Reply-To: <a@b> (comment) <c@d>
X-Bad Header: value
Content-Type: text/plain; name="=?utf-8?b?w6Q=?="

body\x00with nul
""",
)

w(
    "48_dsn_report.eml",
    """From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: alice@example.com
Subject: Undelivered Mail Returned to Sender
Date: Tue, 17 Jan 2023 10:00:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="DSN.1234/mx.example.org"

This is a MIME-encapsulated message.

--DSN.1234/mx.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--DSN.1234/mx.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Tue, 17 Jan 2023 09:59:58 +0000

Final-Recipient: rfc822; nobody@example.net
Action: failed
Status: 5.1.1

--DSN.1234/mx.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: alice@example.com
To: nobody@example.net
Subject: hello

--DSN.1234/mx.example.org
Content-Type: message/global

From: jörg@example.de
To: nobody@example.net
Subject: internationalized

body
--DSN.1234/mx.example.org--
""",
)

w(
    "49_calendar_related.eml",
    """From: Organizer <org@example.com>
To: att@example.org
Subject: Invitation: Meeting
Date: Wed, 18 Jan 2023 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=UTF-8

You are invited.
--alt
Content-Type: multipart/related; boundary="rel"; type="text/html"

--rel
Content-Type: text/html; charset=UTF-8

<p>You are invited <img src="cid:logo"></p>
--rel
Content-Type: image/png; name="logo.png"
Content-ID: <logo>
Content-Disposition: inline; filename="logo.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt
Content-Type: text/calendar; charset=UTF-8; method=REQUEST

BEGIN:VCALENDAR
METHOD:REQUEST
END:VCALENDAR
--alt--
--mix
Content-Type: application/ics; name="invite.ics"
Content-Disposition: attachment; filename="invite.ics"
Content-Transfer-Encoding: base64

QkVHSU46VkNBTEVOREFSDQpFTkQ6VkNBTEVOREFSDQo=
--mix--
""",
)
