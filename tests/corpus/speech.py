# ruff: noqa: E501
"""Speech material for the corpus: call-center sentence banks and cached espeak-ng synthesis.

Every utterance is synthesised with ``espeak-ng``, trimmed to its voiced extent (10 ms frames
above ``max - 40 dB`` on the clean output) and normalised to an active-speech RMS of 0 dBFS,
so a placement gain in dB sets its level in dBFS directly.  Voiced segments are the active
frames with internal pauses shorter than :data:`MERGE_GAP_S` merged.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

import numpy as np
import soxr

ESPEAK_RATE_HZ = 22050
FRAME_S = 0.010
THRESH_DB = 40.0
MERGE_GAP_S = 0.3
BACKCHANNEL_MAX_S = 0.5

LANGS = ("en", "de", "fr")
VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en", "en+f3", "en+m3", "en+f2", "en-us", "en-us+f3", "en-us+m3", "en+f4"),
    "de": ("de", "de+f3", "de+m3", "de+f2", "de+f4"),
    "fr": ("fr", "fr+f3", "fr+m3", "fr+f2", "fr+f4"),
}
NAMES = {"en": ("Sarah", "Tom", "Priya", "James"), "de": ("Anna", "Jonas", "Petra", "Lukas"),
         "fr": ("Claire", "Julien", "Sophie", "Marc")}

TEXT: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "greet": (
            "Good morning, you are speaking with {name} from Northwind Energy, how can I help you today?",
            "Thank you for calling Alpina Telecom, my name is {name}, what can I do for you?",
            "Hello, this is {name} at Brightside Insurance customer service, how may I help?"),
        "explain": (
            "I can see your account here, and the last payment was received on the third of March.",
            "The new tariff starts at the beginning of next month, so your next bill will already show the lower price.",
            "What happened is that the meter reading was estimated, because we did not receive a reading from you in January.",
            "I will send you a confirmation by email, and you should receive it within the next ten minutes.",
            "To change the bank details, I need to verify your identity first, so could you tell me your date of birth?",
            "If I understand correctly, the router stopped working after the update on Monday evening.",
            "There is a known outage in your area, and our technicians expect to have it fixed by six o'clock tonight.",
            "I have now credited twenty euros to your account as a goodwill gesture for the inconvenience.",
            "The contract can be cancelled with one month notice, and there is no fee if you switch to the basic plan.",
            "Let me explain the two options you have, and then you can decide which one suits you better.",
            "Your parcel left our warehouse yesterday, and the courier will deliver it between nine and one tomorrow."),
        "hold_ask": (
            "Would you mind if I put you on hold for a moment while I check this with my colleague?",
            "May I place you on hold for a minute so I can look into this?"),
        "hold_thanks": (
            "Thank you for holding, I have checked the details with the billing team.",
            "Thanks for your patience, I am sorry for the wait, I had to confirm the new price."),
        "close": ("Is there anything else I can help you with today?",
                  "Thank you for calling, and have a lovely day, goodbye."),
        "interject": (
            "Sorry, may I just ask for your customer number first, please?",
            "Excuse me, can I stop you there for a second, which address is that?",
            "Just a moment, let me make sure I have written that down correctly."),
        "raised": (
            "No, listen, I have already told you three times that this is not possible!",
            "Please let me finish, I am trying to help you here!"),
        "leak": ("Hey Tom, do you know how to reset a meter profile?",
                 "Can you pass me the blue folder, please?",
                 "Oh no, this system is so slow again today."),
        "problem": (
            "Hi, yes, I am calling because my last bill is almost twice as high as usual, and I do not understand why.",
            "My internet has been dropping out every evening for about a week now, and it is getting really annoying.",
            "I moved to a new flat last month, and I would like to transfer my contract to the new address.",
            "I ordered a replacement part two weeks ago, and it still has not arrived.",
            "I was charged twice for the same month, once on the first and again on the fifteenth.",
            "The app keeps telling me that my password is wrong, even though I reset it this morning.",
            "I would like to know why my direct debit was cancelled without any notice."),
        "reply": ("Okay, that makes sense, thank you for explaining.",
                  "Yes, my customer number is four five seven, two two nine, eight one.",
                  "It is Linden Street twelve, on the second floor.",
                  "Alright, and how long will that take?",
                  "No, I did not receive any letter about that."),
        "yes": ("Yes, of course.", "Sure, no problem.", "Okay, go ahead."),
        "bye": ("No, that was everything, thank you very much.", "Great, thanks for your help, bye."),
        "agitated": (
            "This is the third time I am calling about this, and nobody has fixed it!",
            "I am really fed up, I want to speak to someone who can actually help me!",
            "You people keep promising things and nothing ever happens!"),
        "cinterject": ("Wait, wait, that is not what I was told last time!",
                       "Sorry, but I already did all of that yesterday."),
        "hold_remark": ("Hello?", "Are you still there?"),
        "ack": ("I see, I understand.", "I am sorry to hear that.", "Alright, I see what you mean.",
                "Okay, thank you."),
        "backchannel": ("mhm", "okay", "right", "yes"),
    },
    "de": {
        "greet": (
            "Guten Tag, Sie sprechen mit {name} von den Stadtwerken Nordheim, wie kann ich Ihnen helfen?",
            "Herzlich willkommen bei Alpina Telekom, mein Name ist {name}, was kann ich für Sie tun?"),
        "explain": (
            "Ich sehe hier Ihr Kundenkonto, die letzte Zahlung ist am dritten März bei uns eingegangen.",
            "Der neue Tarif gilt ab dem nächsten Monat, Ihre nächste Rechnung zeigt also schon den günstigeren Preis.",
            "Der Zählerstand wurde geschätzt, weil wir im Januar keine Ablesung von Ihnen erhalten haben.",
            "Ich schicke Ihnen gleich eine Bestätigung per E-Mail, die sollte in zehn Minuten ankommen.",
            "Um die Bankverbindung zu ändern, muss ich zuerst Ihre Identität prüfen, nennen Sie mir bitte Ihr Geburtsdatum.",
            "Wenn ich Sie richtig verstehe, funktioniert der Router seit dem Update am Montagabend nicht mehr.",
            "In Ihrer Region gibt es gerade eine bekannte Störung, unsere Techniker rechnen mit einer Behebung bis heute Abend.",
            "Ich habe Ihnen jetzt zwanzig Euro als Kulanz gutgeschrieben, entschuldigen Sie bitte die Umstände.",
            "Der Vertrag ist mit einer Frist von einem Monat kündbar, und beim Wechsel in den Basistarif fällt keine Gebühr an.",
            "Ich erkläre Ihnen kurz die beiden Möglichkeiten, und dann können Sie in Ruhe entscheiden.",
            "Ihr Paket hat gestern unser Lager verlassen und wird morgen zwischen neun und dreizehn Uhr zugestellt."),
        "hold_ask": (
            "Darf ich Sie kurz in die Warteschleife legen, während ich das mit meiner Kollegin kläre?",
            "Ist es in Ordnung, wenn ich Sie einen Moment halte, damit ich das prüfen kann?"),
        "hold_thanks": (
            "Vielen Dank für Ihre Geduld, ich habe das mit der Abrechnung geklärt.",
            "Danke fürs Warten, entschuldigen Sie bitte, ich musste den neuen Preis bestätigen lassen."),
        "close": ("Kann ich sonst noch etwas für Sie tun?",
                  "Vielen Dank für Ihren Anruf und einen schönen Tag noch, auf Wiederhören."),
        "interject": (
            "Entschuldigung, darf ich kurz nach Ihrer Kundennummer fragen?",
            "Moment, darf ich da kurz einhaken, welche Adresse meinen Sie genau?",
            "Einen Augenblick bitte, ich möchte sichergehen, dass ich das richtig notiere."),
        "raised": (
            "Nein, hören Sie mir bitte zu, ich habe Ihnen schon dreimal gesagt, dass das nicht geht!",
            "Lassen Sie mich bitte ausreden, ich versuche doch, Ihnen zu helfen!"),
        "leak": ("Sag mal Thomas, weißt du, wie man das Zählerprofil zurücksetzt?",
                 "Kannst du mir mal kurz den blauen Ordner geben?",
                 "Oh Mann, das System ist heute wieder so langsam."),
        "problem": (
            "Hallo, ja, ich rufe an, weil meine letzte Rechnung fast doppelt so hoch ist wie sonst, und ich verstehe nicht warum.",
            "Mein Internet bricht seit ungefähr einer Woche jeden Abend ab, und das nervt wirklich.",
            "Ich bin letzten Monat umgezogen und möchte meinen Vertrag auf die neue Adresse übertragen.",
            "Ich habe vor zwei Wochen ein Ersatzteil bestellt, und es ist immer noch nicht angekommen.",
            "Mir wurde derselbe Monat zweimal abgebucht, einmal am ersten und dann noch einmal am fünfzehnten.",
            "Die App sagt mir ständig, dass mein Passwort falsch ist, obwohl ich es heute Morgen zurückgesetzt habe.",
            "Ich möchte wissen, warum meine Lastschrift ohne jede Ankündigung storniert wurde."),
        "reply": ("Okay, das ergibt Sinn, danke für die Erklärung.",
                  "Ja, meine Kundennummer ist vier fünf sieben, zwei zwei neun, acht eins.",
                  "Das ist die Lindenstraße zwölf, im zweiten Stock.",
                  "Gut, und wie lange wird das dauern?",
                  "Nein, ich habe dazu keinen Brief bekommen."),
        "yes": ("Ja, natürlich.", "Ja, kein Problem.", "Okay, machen Sie nur."),
        "bye": ("Nein, das war alles, vielen Dank.", "Super, danke für Ihre Hilfe, tschüss."),
        "agitated": (
            "Das ist jetzt schon das dritte Mal, dass ich deswegen anrufe, und nichts passiert!",
            "Ich habe wirklich die Nase voll, ich will mit jemandem sprechen, der mir hilft!",
            "Sie versprechen immer alles, und am Ende passiert überhaupt nichts!"),
        "cinterject": ("Moment, Moment, das hat man mir letztes Mal aber ganz anders gesagt!",
                       "Entschuldigung, aber das habe ich alles gestern schon gemacht."),
        "hold_remark": ("Hallo?", "Sind Sie noch da?"),
        "ack": ("Verstehe, das tut mir leid.", "Alles klar, ich verstehe.", "Okay, danke schön.",
                "Ja, ich verstehe, was Sie meinen."),
        "backchannel": ("ja", "mhm", "genau", "okay"),
    },
    "fr": {
        "greet": (
            "Bonjour, vous êtes en ligne avec {name} de Énergie Lumière, comment puis-je vous aider?",
            "Bienvenue chez Alpina Télécom, je m'appelle {name}, que puis-je faire pour vous?"),
        "explain": (
            "Je vois votre dossier, le dernier paiement a bien été reçu le trois mars.",
            "Le nouveau tarif commence le mois prochain, donc votre prochaine facture affichera déjà le prix réduit.",
            "Le relevé du compteur a été estimé, parce que nous n'avons pas reçu votre relevé en janvier.",
            "Je vous envoie une confirmation par courriel, vous devriez la recevoir dans les dix prochaines minutes.",
            "Pour modifier vos coordonnées bancaires, je dois d'abord vérifier votre identité, quelle est votre date de naissance?",
            "Si je comprends bien, le routeur ne fonctionne plus depuis la mise à jour de lundi soir.",
            "Il y a une panne connue dans votre secteur, et nos techniciens prévoient une réparation avant ce soir.",
            "Je viens de créditer vingt euros sur votre compte, à titre de geste commercial.",
            "Le contrat peut être résilié avec un préavis d'un mois, et il n'y a pas de frais si vous passez à l'offre de base.",
            "Je vais vous expliquer les deux options, et ensuite vous pourrez choisir celle qui vous convient le mieux.",
            "Votre colis a quitté notre entrepôt hier, et le livreur passera demain entre neuf heures et midi."),
        "hold_ask": (
            "Est-ce que je peux vous mettre en attente un instant, le temps de vérifier avec ma collègue?",
            "Puis-je vous faire patienter une minute, pour que je regarde cela de plus près?"),
        "hold_thanks": (
            "Merci de votre patience, j'ai vérifié les détails avec le service facturation.",
            "Merci d'avoir patienté, désolée pour l'attente, je devais confirmer le nouveau prix."),
        "close": ("Est-ce que je peux faire autre chose pour vous?",
                  "Merci de votre appel, et très bonne journée, au revoir."),
        "interject": (
            "Pardon, est-ce que je peux vous demander votre numéro client d'abord?",
            "Excusez-moi de vous interrompre, de quelle adresse s'agit-il exactement?",
            "Un instant, je veux être sûre de bien noter cela."),
        "raised": (
            "Non, écoutez-moi, je vous ai déjà dit trois fois que ce n'est pas possible!",
            "Laissez-moi finir, s'il vous plaît, j'essaie de vous aider!"),
        "leak": ("Dis, Thomas, tu sais comment on réinitialise le profil du compteur?",
                 "Tu peux me passer le classeur bleu, s'il te plaît?",
                 "Oh là là, le système est encore tellement lent aujourd'hui."),
        "problem": (
            "Bonjour, oui, j'appelle parce que ma dernière facture est presque deux fois plus élevée que d'habitude, et je ne comprends pas pourquoi.",
            "Ma connexion internet coupe tous les soirs depuis environ une semaine, et c'est vraiment pénible.",
            "J'ai déménagé le mois dernier, et je voudrais transférer mon contrat à ma nouvelle adresse.",
            "J'ai commandé une pièce de rechange il y a deux semaines, et elle n'est toujours pas arrivée.",
            "On m'a prélevé deux fois le même mois, une fois le premier et une autre fois le quinze.",
            "L'application me dit sans arrêt que mon mot de passe est faux, alors que je l'ai réinitialisé ce matin.",
            "Je voudrais savoir pourquoi mon prélèvement a été annulé sans aucun préavis."),
        "reply": ("D'accord, c'est logique, merci pour l'explication.",
                  "Oui, mon numéro client est quatre cinq sept, deux deux neuf, huit un.",
                  "C'est au douze rue des Tilleuls, au deuxième étage.",
                  "Bon, et combien de temps ça va prendre?",
                  "Non, je n'ai reçu aucun courrier à ce sujet."),
        "yes": ("Oui, bien sûr.", "Oui, pas de problème.", "D'accord, allez-y."),
        "bye": ("Non, c'est tout, merci beaucoup.", "Parfait, merci pour votre aide, au revoir."),
        "agitated": (
            "C'est la troisième fois que j'appelle pour ça, et personne n'a rien réglé!",
            "J'en ai vraiment assez, je veux parler à quelqu'un qui peut m'aider!",
            "Vous promettez toujours tout, et au final il ne se passe rien!"),
        "cinterject": ("Attendez, attendez, ce n'est pas ce qu'on m'a dit la dernière fois!",
                       "Pardon, mais j'ai déjà fait tout ça hier."),
        "hold_remark": ("Allô?", "Vous êtes toujours là?"),
        "ack": ("Je comprends, je suis désolée.", "Très bien, je vois.", "D'accord, merci.",
                "Oui, je vois ce que vous voulez dire."),
        "backchannel": ("oui", "d'accord", "mhm"),
    },
}


def lang_of(voice: str) -> str:
    """Sentence-bank language of an espeak voice name (``en-us+f3`` -> ``en``)."""
    return voice.split("+")[0].split("-")[0]


@dataclass(frozen=True)
class Utt:
    """A trimmed, level-normalised utterance at one sample rate."""

    audio: np.ndarray  # float32, active-speech RMS = 1.0
    segs: tuple[tuple[float, float], ...]  # voiced segments, seconds from the utterance start
    text: str
    words: int
    sr: int

    @property
    def dur(self) -> float:
        return len(self.audio) / self.sr

    @property
    def voiced(self) -> float:
        return sum(e - s for s, e in self.segs)


@dataclass
class Synth:
    """espeak-ng front end with a per-build cache keyed by (voice, speed, pitch, amp, text)."""

    calls: int = 0
    _raw: dict[tuple[str, int, int, int, str], Utt] = field(default_factory=dict)
    _rs: dict[tuple[str, int, int, int, str, int], Utt] = field(default_factory=dict)

    def utt(self, voice: str, speed: int, pitch: int, text: str, sr: int, amp: int = 100) -> Utt:
        key = (voice, int(speed), int(pitch), int(amp), text)
        if (*key, sr) in self._rs:
            return self._rs[(*key, sr)]
        if key not in self._raw:
            self._raw[key] = _analyse(_espeak(*key), text)
            self.calls += 1
        raw = self._raw[key]
        if sr != ESPEAK_RATE_HZ:
            audio = soxr.resample(raw.audio, ESPEAK_RATE_HZ, sr, quality="HQ").astype(np.float32)
            dur = len(audio) / sr
            segs = tuple((min(a, dur), min(b, dur)) for a, b in raw.segs)
            raw = Utt(audio, segs, raw.text, raw.words, sr)
        self._rs[(*key, sr)] = raw
        return raw

    def backchannel(self, voice: str, pitch: int, text: str, sr: int) -> Utt:
        """A backchannel no longer than :data:`BACKCHANNEL_MAX_S`, sped up if necessary."""
        for speed in range(190, 400, 30):
            u = self.utt(voice, speed, pitch, text, sr)
            if u.dur <= BACKCHANNEL_MAX_S:
                return u
        raise ValueError(f"backchannel {text!r} too long for {voice}")


def _espeak(voice: str, speed: int, pitch: int, amp: int, text: str) -> np.ndarray:
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-a", str(amp), "-p", str(pitch),
           "--stdout", text]
    data = subprocess.run(cmd, capture_output=True, check=True).stdout
    pos = data.find(b"data")
    if data[:4] != b"RIFF" or pos < 0 or int.from_bytes(data[24:28], "little") != ESPEAK_RATE_HZ:
        raise RuntimeError(f"unexpected espeak-ng output for {cmd}")
    pcm = data[pos + 8:]
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32) / 32768.0


def voiced_segments(x: np.ndarray, sr: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Active 10 ms frames (``max - 40 dB``) and their runs merged over short pauses."""
    f = round(sr * FRAME_S)
    n = len(x) // f
    e = (x[: n * f].reshape(n, f).astype(np.float64) ** 2).mean(axis=1)
    db = 10 * np.log10(e + 1e-20)
    act = db > max(db.max() - THRESH_DB, -90.0)
    idx = np.flatnonzero(act)
    runs: list[tuple[int, int]] = []
    max_gap = round(MERGE_GAP_S / FRAME_S)
    for i in idx:
        if runs and i - runs[-1][1] < max_gap:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((int(i), int(i) + 1))
    return act, runs


def _analyse(x: np.ndarray, text: str) -> Utt:
    sr = ESPEAK_RATE_HZ
    f = round(sr * FRAME_S)
    act, runs = voiced_segments(x, sr)
    if not runs:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    a, b = runs[0][0], runs[-1][1]
    y = x[a * f: b * f].copy()
    frames = y[: (b - a) * f].reshape(b - a, f)
    rms = float(np.sqrt((frames[act[a:b]] ** 2).mean()))
    segs = tuple((float((s - a) * FRAME_S), float((e - a) * FRAME_S)) for s, e in runs)
    return Utt((y / rms).astype(np.float32), segs, text, len(text.split()), sr)
