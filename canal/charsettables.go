package canal

// The codes where MariaDB's conversion of a character set to utf8mb4 differs from the
// WHATWG mapping golang.org/x/text decodes (beyond the ranges of user-defined characters,
// which euc and cp932 compute): each "code:character" pair is a character's bytes in hex
// and the Unicode code point the server gives it. They were read from MariaDB 10.11's own
// conversion, and TestCharsetDecodersConvertAsTheServerDoes compares every code of each
// set with the server's again. Big5's are mostly the ETEN extension (kana and Cyrillic at
// C6A1–C7FC), which WHATWG's Big5-HKSCS puts elsewhere; where the server's table has no
// character it gives U+FFFD, and so does the stream.
var (
	big5Exceptions = `a145:2022 a14e:FF64 a15a:FFFD a1c2:203E a1c3:FFFD a1c5:FFFD a1e3:223C a1f2:2641 a1f3:2609
		a1fe:FFFD a240:FFFD a241:FF0F a242:FF3C a244:00A5 a246:00A2 a247:00A3 a2cc:FFFD a2ce:FFFD
		c6a1:30FE c6a2:309D c6a3:309E c6a4:3005 c6a5:3041 c6a6:3042 c6a7:3043 c6a8:3044 c6a9:3045
		c6aa:3046 c6ab:3047 c6ac:3048 c6ad:3049 c6ae:304A c6af:304B c6b0:304C c6b1:304D c6b2:304E
		c6b3:304F c6b4:3050 c6b5:3051 c6b6:3052 c6b7:3053 c6b8:3054 c6b9:3055 c6ba:3056 c6bb:3057
		c6bc:3058 c6bd:3059 c6be:305A c6bf:305B c6c0:305C c6c1:305D c6c2:305E c6c3:305F c6c4:3060
		c6c5:3061 c6c6:3062 c6c7:3063 c6c8:3064 c6c9:3065 c6ca:3066 c6cb:3067 c6cc:3068 c6cd:3069
		c6ce:306A c6cf:306B c6d0:306C c6d1:306D c6d2:306E c6d3:306F c6d4:3070 c6d5:3071 c6d6:3072
		c6d7:3073 c6d8:3074 c6d9:3075 c6da:3076 c6db:3077 c6dc:3078 c6dd:3079 c6de:307A c6df:307B
		c6e0:307C c6e1:307D c6e2:307E c6e3:307F c6e4:3080 c6e5:3081 c6e6:3082 c6e7:3083 c6e8:3084
		c6e9:3085 c6ea:3086 c6eb:3087 c6ec:3088 c6ed:3089 c6ee:308A c6ef:308B c6f0:308C c6f1:308D
		c6f2:308E c6f3:308F c6f4:3090 c6f5:3091 c6f6:3092 c6f7:3093 c6f8:30A1 c6f9:30A2 c6fa:30A3
		c6fb:30A4 c6fc:30A5 c6fd:30A6 c6fe:30A7 c740:30A8 c741:30A9 c742:30AA c743:30AB c744:30AC
		c745:30AD c746:30AE c747:30AF c748:30B0 c749:30B1 c74a:30B2 c74b:30B3 c74c:30B4 c74d:30B5
		c74e:30B6 c74f:30B7 c750:30B8 c751:30B9 c752:30BA c753:30BB c754:30BC c755:30BD c756:30BE
		c757:30BF c758:30C0 c759:30C1 c75a:30C2 c75b:30C3 c75c:30C4 c75d:30C5 c75e:30C6 c75f:30C7
		c760:30C8 c761:30C9 c762:30CA c763:30CB c764:30CC c765:30CD c766:30CE c767:30CF c768:30D0
		c769:30D1 c76a:30D2 c76b:30D3 c76c:30D4 c76d:30D5 c76e:30D6 c76f:30D7 c770:30D8 c771:30D9
		c772:30DA c773:30DB c774:30DC c775:30DD c776:30DE c777:30DF c778:30E0 c779:30E1 c77a:30E2
		c77b:30E3 c77c:30E4 c77d:30E5 c77e:30E6 c7a1:30E7 c7a2:30E8 c7a3:30E9 c7a4:30EA c7a5:30EB
		c7a6:30EC c7a7:30ED c7a8:30EE c7a9:30EF c7aa:30F0 c7ab:30F1 c7ac:30F2 c7ad:30F3 c7ae:30F4
		c7af:30F5 c7b0:30F6 c7b1:0414 c7b2:0415 c7b3:0401 c7b4:0416 c7b5:0417 c7b6:0418 c7b7:0419
		c7b8:041A c7b9:041B c7ba:041C c7bb:0423 c7bc:0424 c7bd:0425 c7be:0426 c7bf:0427 c7c0:0428
		c7c1:0429 c7c2:042A c7c3:042B c7c4:042C c7c5:042D c7c6:042E c7c7:042F c7c8:0430 c7c9:0431
		c7ca:0432 c7cb:0433 c7cc:0434 c7cd:0435 c7ce:0451 c7cf:0436 c7d0:0437 c7d1:0438 c7d2:0439
		c7d3:043A c7d4:043B c7d5:043C c7d6:043D c7d7:043E c7d8:043F c7d9:0440 c7da:0441 c7db:0442
		c7dc:0443 c7dd:0444 c7de:0445 c7df:0446 c7e0:0447 c7e1:0448 c7e2:0449 c7e3:044A c7e4:044B
		c7e5:044C c7e6:044D c7e7:044E c7e8:044F c7e9:2460 c7ea:2461 c7eb:2462 c7ec:2463 c7ed:2464
		c7ee:2465 c7ef:2466 c7f0:2467 c7f1:2468 c7f2:2469 c7f3:2474 c7f4:2475 c7f5:2476 c7f6:2477
		c7f7:2478 c7f8:2479 c7f9:247A c7fa:247B c7fb:247C c7fc:247D`
	cp866Exceptions   = `fc:207F fd:00B2`
	eucjpmsExceptions = `8fa2c3:FFE4 8ff3f3:2170 8ff3f4:2171 8ff3f5:2172 8ff3f6:2173 8ff3f7:2174 8ff3f8:2175 8ff3f9:2176
		8ff3fa:2177 8ff3fb:2178 8ff3fc:2179 8ff3fd:2160 8ff3fe:2161 8ff4a1:2162 8ff4a2:2163 8ff4a3:2164
		8ff4a4:2165 8ff4a5:2166 8ff4a6:2167 8ff4a7:2168 8ff4a8:2169 8ff4a9:FF07 8ff4aa:FF02 8ff4ab:3231
		8ff4ac:2116 8ff4ad:2121 8ff4ae:70BB 8ff4af:4EFC 8ff4b0:50F4 8ff4b1:51EC 8ff4b2:5307 8ff4b3:5324
		8ff4b4:FA0E 8ff4b5:548A 8ff4b6:5759 8ff4b7:FA0F 8ff4b8:FA10 8ff4b9:589E 8ff4ba:5BEC 8ff4bb:5CF5
		8ff4bc:5D53 8ff4bd:FA11 8ff4be:5FB7 8ff4bf:6085 8ff4c0:6120 8ff4c1:654E 8ff4c2:663B 8ff4c3:6665
		8ff4c4:FA12 8ff4c5:F929 8ff4c6:6801 8ff4c7:FA13 8ff4c8:FA14 8ff4c9:6A6B 8ff4ca:6AE2 8ff4cb:6DF8
		8ff4cc:6DF2 8ff4cd:7028 8ff4ce:FA15 8ff4cf:FA16 8ff4d0:7501 8ff4d1:7682 8ff4d2:769E 8ff4d3:FA17
		8ff4d4:7930 8ff4d5:FA18 8ff4d6:FA19 8ff4d7:FA1A 8ff4d8:FA1B 8ff4d9:7AE7 8ff4da:FA1C 8ff4db:FA1D
		8ff4dc:7DA0 8ff4dd:7DD6 8ff4de:FA1E 8ff4df:8362 8ff4e0:FA1F 8ff4e1:85B0 8ff4e2:FA20 8ff4e3:FA21
		8ff4e4:8807 8ff4e5:FA22 8ff4e6:8B7F 8ff4e7:8CF4 8ff4e8:8D76 8ff4e9:FA23 8ff4ea:FA24 8ff4eb:FA25
		8ff4ec:90DE 8ff4ed:FA26 8ff4ee:9115 8ff4ef:FA27 8ff4f0:FA28 8ff4f1:9592 8ff4f2:F9DC 8ff4f3:FA29
		8ff4f4:973B 8ff4f5:974D 8ff4f6:9751 8ff4f7:FA2A 8ff4f8:FA2B 8ff4f9:FA2C 8ff4fa:999E 8ff4fb:9AD9
		8ff4fc:9B72 8ff4fd:FA2D 8ff4fe:9ED1`
	gb2312Exceptions = `a1a4:30FB a1aa:2015`
	greekExceptions  = `a1:02BD a2:02BC`
	hebrewExceptions = `af:203E`
	koi8uExceptions  = `95:2022 ae:255D be:256C`
	sjisExceptions   = `815f:005C 8160:301C 8161:2016 817c:2212 8191:00A2 8192:00A3 81ca:00AC`
	ujisExceptions   = `a1c0:005C a1c1:301C a1c2:2016 a1dd:2212 a1f1:00A2 a1f2:00A3 a2cc:00AC 8fa2b7:007E`
)
