"""Word lists for the project's own sentence generator (written for this project).

Plain everyday English, every word in the CMU pronouncing dictionary, chosen to spread
over English phonemes (voiced/voiceless pairs, clusters, diphthongs, syllabic r/l).
Nouns are singular; `sentences.plural` makes plurals. Verbs are (base, past) pairs.
"""

from __future__ import annotations


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


NAMES = _split(
    """
    Anna Benjamin Clara David Edward Fiona George Helen Isaac Julia Kevin Laura Martin
    Nora Oliver Paula Quentin Rachel Samuel Teresa Victor Wendy Xavier Yvonne Zachary
    Alice Brian Carmen Daniel Emily Frank Grace Henry Irene Jacob Karen Leonard Monica
    Nathan Olivia Peter Rosa Simon Thomas Ursula Vincent William Agnes Bernard Charlotte
    Douglas Eleanor Felix Gloria Harold Ivan Joyce Keith Lucy Marcus Natalie Oscar Patrick
    Ruth Sophie Timothy Violet Walter Arthur Bethany Cecilia Dorothy Eugene Gordon Hugo
    Judith Lionel Margaret Norman Philip Rebecca Stanley Theodore Vivian Wallace
    """
)

PLACES = _split(
    """
    London Paris Boston Chicago Denver Dublin Glasgow Houston Lisbon Madrid Moscow
    Oslo Prague Seattle Sydney Toronto Vienna Warsaw Athens Berlin Cairo Geneva
    Helsinki Kyoto Lagos Manchester Montreal Naples Ottawa Phoenix Quebec Rome Tokyo
    Venice Zurich Bristol Edinburgh Florence Hamburg Memphis Nashville Portland
    Brazil Canada Egypt France Germany Iceland India Italy Japan Kenya Mexico Norway
    Peru Poland Spain Sweden Turkey Scotland Wales Ireland Chile Greece Morocco
    """
)

NOUNS = _split(
    """
    apple bag ball basket bath beach bed bell bench bicycle bird blanket boat book
    bottle bowl box bread bridge brush bucket cabin cake camera candle car card carpet
    castle cat chair cheese chicken church clock cloud coat coin computer cook cottage
    cup curtain desk dog doll door dragon drawer dress drum duck engine envelope farm
    feather fence field finger fire fish flag flower forest fork fountain frog garden
    gate gift glove goat guitar hammer hat helmet hill horse hospital hotel house island
    jacket jar jewel kettle key kitchen kite ladder lake lamp lemon letter library lion
    lock machine map market mirror monkey mountain mouse museum nail napkin necklace nest
    newspaper notebook ocean office onion orange oven owl package page paint palace pan
    paper park parrot pencil piano picture pillow pipe plate pocket pond potato puzzle
    rabbit radio rainbow ribbon ring river road robot rock roof rope rose sail sandwich
    saucer school scissors shadow sheep shell ship shirt shoe shop shovel sink skirt
    sled snake sock sofa spoon square stage stair star station statue stone stove
    street string suitcase sweater table tail teacher telephone tent theater thread
    ticket tiger toast tower town toy tractor train tree truck trumpet tunnel turtle
    umbrella vase village violin wagon wall wallet watch whale wheel whistle window
    wing wire wolf yard zebra anchor arrow bakery balloon banana barrel beard beetle
    biscuit blossom bonnet branch breeze brick buckle button cable canal canvas cellar
    chain chimney circle closet collar compass cushion cycle diamond dinosaur ditch
    dolphin elbow fabric factory falcon ferry festival fiddle folder garage giraffe
    glacier hammock harbor harvest hedge helicopter hive honey jungle kangaroo kingdom
    ladle lantern lawn leather lever lizard magnet marble meadow medal melon
    microphone mitten moth motor muffin mushroom needle oyster paddle pebble pepper
    pigeon pilot pirate planet plow pumpkin puppet quilt raft reindeer saddle salmon
    scarf sculpture seal shelf shield shutter slipper spider squirrel stamp
    storm sunflower swan sword tablet tambourine teapot thermometer thimble thunder
    tomato torch towel treasure trolley trophy tulip valley vessel volcano walnut
    waterfall weasel wheelbarrow windmill wizard yacht
    """
)

PEOPLE = _split(
    """
    baker farmer doctor nurse pilot driver painter singer sailor soldier student
    teacher writer dancer gardener builder fisherman neighbor stranger captain
    carpenter chemist cousin engineer grandmother grandfather journalist lawyer
    librarian mechanic musician photographer plumber poet professor scientist
    shepherd tailor traveler visitor waiter
    """
)

ADJECTIVES = _split(
    """
    big small tall short long wide narrow heavy light dark bright quiet loud soft hard
    warm cold hot cool wet dry clean dirty new old young ancient modern fresh rotten
    sweet sour bitter smooth rough sharp blunt round square flat deep shallow thick thin
    empty full cheap expensive rich poor happy sad angry calm brave shy clever strange
    famous gentle polite rude busy lazy lucky careful careless curious friendly hungry
    thirsty sleepy noisy silent golden silver wooden woolen plastic broken shiny dusty
    muddy sandy rusty crooked elegant enormous tiny fragile sturdy delicate colorful
    purple yellow orange green blue red pink brown black white grey crimson scarlet
    violet turquoise beige striped spotted patterned frozen boiling gloomy cheerful
    peaceful dangerous mysterious ordinary peculiar magnificent humble eager weary
    """
)

# (base, past) pairs of verbs that take an object.
VERBS = (
    ("carry", "carried"),
    ("find", "found"),
    ("bring", "brought"),
    ("buy", "bought"),
    ("build", "built"),
    ("catch", "caught"),
    ("choose", "chose"),
    ("clean", "cleaned"),
    ("close", "closed"),
    ("cover", "covered"),
    ("draw", "drew"),
    ("drop", "dropped"),
    ("fix", "fixed"),
    ("fold", "folded"),
    ("follow", "followed"),
    ("hide", "hid"),
    ("hold", "held"),
    ("keep", "kept"),
    ("kick", "kicked"),
    ("lift", "lifted"),
    ("lose", "lost"),
    ("measure", "measured"),
    ("move", "moved"),
    ("open", "opened"),
    ("paint", "painted"),
    ("pick", "picked"),
    ("polish", "polished"),
    ("pull", "pulled"),
    ("push", "pushed"),
    ("repair", "repaired"),
    ("sell", "sold"),
    ("send", "sent"),
    ("shake", "shook"),
    ("share", "shared"),
    ("sketch", "sketched"),
    ("steal", "stole"),
    ("throw", "threw"),
    ("touch", "touched"),
    ("wash", "washed"),
    ("watch", "watched"),
    ("weigh", "weighed"),
    ("wrap", "wrapped"),
    ("borrow", "borrowed"),
    ("deliver", "delivered"),
    ("examine", "examined"),
    ("inspect", "inspected"),
    ("photograph", "photographed"),
    ("describe", "described"),
    ("decorate", "decorated"),
    ("remember", "remembered"),
    ("admire", "admired"),
    ("notice", "noticed"),
    ("visit", "visited"),
    ("guard", "guarded"),
    ("study", "studied"),
    ("squeeze", "squeezed"),
    ("swap", "swapped"),
    ("juggle", "juggled"),
    ("rescue", "rescued"),
    ("return", "returned"),
)

# Verbs without an object, (base, past).
INTRANSITIVE = (
    ("arrive", "arrived"),
    ("laugh", "laughed"),
    ("sing", "sang"),
    ("dance", "danced"),
    ("sleep", "slept"),
    ("wait", "waited"),
    ("whisper", "whispered"),
    ("shout", "shouted"),
    ("smile", "smiled"),
    ("travel", "travelled"),
    ("swim", "swam"),
    ("run", "ran"),
    ("walk", "walked"),
    ("climb", "climbed"),
    ("wander", "wandered"),
    ("hurry", "hurried"),
    ("listen", "listened"),
    ("argue", "argued"),
    ("vanish", "vanished"),
    ("shiver", "shivered"),
    ("yawn", "yawned"),
    ("rest", "rested"),
    ("cough", "coughed"),
    ("sneeze", "sneezed"),
    ("jump", "jumped"),
)

ADVERBS = _split(
    """
    slowly quickly quietly loudly carefully gently happily sadly suddenly finally
    eagerly nervously proudly
    silently calmly boldly badly neatly politely patiently thoroughly cheerfully
    """
)

TIMES = (
    "yesterday",
    "this morning",
    "last night",
    "on Monday",
    "on Tuesday evening",
    "on Wednesday",
    "on Thursday afternoon",
    "on Friday",
    "on Saturday morning",
    "on Sunday",
    "in January",
    "in February",
    "in March",
    "in April",
    "in May",
    "in June",
    "in July",
    "in August",
    "in September",
    "in October",
    "in November",
    "in December",
    "after lunch",
    "before dinner",
    "at midnight",
    "at dawn",
    "last winter",
    "next summer",
    "during the storm",
    "after the festival",
    "before breakfast",
    "every weekend",
    "at the end of the day",
    "early this year",
    "a week ago",
    "the day before yesterday",
)

PREPOSITIONS = _split("near behind under beside above inside outside across beyond between")

MEASURES = (
    ("kilogram", "kilograms"),
    ("meter", "meters"),
    ("liter", "liters"),
    ("mile", "miles"),
    ("pound", "pounds"),
    ("dollar", "dollars"),
    ("minute", "minutes"),
    ("hour", "hours"),
    ("day", "days"),
    ("year", "years"),
)

FEELINGS = _split(
    """
    surprised pleased worried delighted puzzled annoyed relieved amazed disappointed
    grateful nervous excited confused embarrassed thrilled
    """
)

IRREGULAR_PLURALS = {
    "mouse": "mice",
    "sheep": "sheep",
    "fish": "fish",
    "goose": "geese",
    "wolf": "wolves",
    "shelf": "shelves",
    "knife": "knives",
    "leaf": "leaves",
    "scissors": "scissors",
    "reindeer": "reindeer",
    "salmon": "salmon",
    "fisherman": "fishermen",
    "grandmother": "grandmothers",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "volcano": "volcanoes",
    "piano": "pianos",
    "radio": "radios",
}
