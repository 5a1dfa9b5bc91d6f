"""A second set of development greeting templates for the answering-machine corpus.

Written blind (without sight of the phrase model or the first templates) and first used
as a held-out set; its misses then informed the phrase model, so it is development data
now, part of the ``dev`` set. The held-out set is ``heldout_greetings``.
"""

HUMAN_SHORT = [
    "Hello?",
    "Hi, this is {first}.",
    "Yeah?",
    "Hello, {first} speaking.",
    "Yeah, go ahead.",
    "{company}, this is {first}.",
    "Hiya.",
    "Hey, what's up?",
    "Yep, {first} here.",
    "Good {tod}.",
    "Hello, who's this?",
    "Speaking.",
    "Hallo?",
    "G'day, {first} speaking.",
    "Hello ji, tell me.",
    "Yes, hello?",
    "Mm-hm, hello?",
    "{last} residence.",
    "Hey, you've got {first}.",
    "Hello, {dept}.",
    "Yo.",
    "Hi there.",
    "Hello, yes?",
    "'Ello?",
    "Hi, sorry, who's calling?",
]

HUMAN_LONG = [
    "Dr. {last}'s office, can you hold one moment?",
    "Hi, sorry, I'm driving, who's this?",
    "Good {tod}, {company}, {first} speaking, how can I help you today?",
    "Thank you for calling {company}, this is {first}, how may I help you?",
    "Hello, {dept}, you're speaking with {first}, what can I do for you?",
    "Hey, yeah, hang on a sec, let me just turn the telly down. Right, hello?",
    "Hello? Sorry, I can barely hear you, I'm on the train.",
    "Yeah, hi, it's {first}, I've only got a minute, what's this about?",
    "Hello, good {tod}, {last} and Sons, {first} here.",
    "Hi, {company} front desk, this is {first}, are you calling about a booking?",
    "Hello, who is this please? I don't have this number saved.",
    "Hello sir, yes, {first} this side, please tell me.",
    "Oh, hi, sorry, I was just in the other room, hello?",
    "{company}, {first} speaking. If it's about the delivery, it's already gone out.",
    "Hiya, you've caught me at a bad time actually, can you be quick?",
    ("Good {tod}, {dept} at {company}, {first} here, are you after someone in particular?"),
    "Hello, yes, this is {first} {last}, were you trying to reach me earlier?",
    "Hey, it's {first}, hold on, I'm just going to pull over. Okay, go for it.",
    ("{company} reception, hold the line one second. Sorry about that, how can I help?"),
    (
        "Yeah, hello, this is {first}. Is this about the car? I already told "
        "the last guy I'm not interested."
    ),
]

HUMAN_SECOND = [
    "Hello? Is anyone there?",
    "Hello? Hello?",
    "Can you hear me?",
    "Hello, you there?",
    "I can't hear you, hello?",
    "Hello? You've gone quiet.",
    "Is somebody there? I can't hear anything.",
    "Hello? Are you calling me?",
    "Hello? I think the line's bad.",
    "Anyone? I'm going to hang up.",
]

VM_PERSONAL = [
    (
        "Hi, you've reached {first}. I can't come to the phone right now, "
        "please leave a message and I'll call you back."
    ),
    "Hello? ... Ha, got you, I'm not here. Leave a message.",
    "It's {first}. Talk.",
    (
        "Hey, this is {first} {last}. Leave your name and number and I'll get "
        "back to you as soon as I can."
    ),
    "Hi, it's {first}, I'm probably out on the water, so text me instead. Cheers.",
    "You've reached {first} and {first2}. We're not around, do the thing after the beep.",
    "Hey, it's {first}, I don't check voicemail, just send me a text.",
    (
        "Hiya, this is {first}'s phone, sorry I missed you, leave a message "
        "after the tone and I'll ring you back."
    ),
    "G'day, you've got {first}, can't talk right now, leave us a message.",
    (
        "Hello, this is {first}. I'm travelling with limited access to my phone, "
        "so please send me an email instead."
    ),
    (
        "Namaste, this is {first} {last}. I am not able to take your call, "
        "kindly leave your message and I will revert back."
    ),
    (
        "Hi, you've reached the {last} family. We can't get to the phone, so "
        "leave a message and we'll call you back."
    ),
    "Yo, it's {first}. You know what to do.",
    "{first}. Leave a message.",
    ("Hey! ... Sorry, I can't hear you. Just kidding, I'm not here, leave a message."),
    "Hi Mum, if it's you I'll ring you later. Everyone else, leave a message.",
    "Hello, you have reached {number}. {first} is not available. Please leave a message.",
    (
        "Hey, it's {first}. I'm at work until late, so leave a message and "
        "I'll get back to you tonight."
    ),
    (
        "Hi, {first} here. I'm on holiday for the next {mins} days, so I'll "
        "get back to you when I'm home."
    ),
    (
        "Hey, you've reached {first}. If this is urgent, call {first2} on "
        "{number}. Otherwise, speak after the beep."
    ),
]

VM_BUSINESS = [
    (
        "You've reached {first} {last} at {company}. I'm either on a call or away "
        "from my desk. Please leave your name, number and a brief message and "
        "I'll return your call."
    ),
    (
        "Thank you for calling {company}. Our office is currently closed. Our "
        "business hours are nine to five, Monday through Friday. Please leave a "
        "message and we'll return your call the next business day."
    ),
    (
        "Hi, this is {first} in {dept} at {company}. I'm out of the office until "
        "Monday. For urgent matters, please contact {first2} in {dept2}."
    ),
    (
        "You have reached the voicemail of {first} {last}, {dept}. Please leave "
        "a message after the tone."
    ),
    (
        "Hello, you've reached the {dept} line at {company}. We're with other "
        "customers at the moment; leave your details and someone will call you "
        "back within {mins} hours."
    ),
    (
        "Good {tod}, you've reached the {dept} team at {company}. We're not "
        "available to take your call. Please leave a message."
    ),
    (
        "{company}, {first} here. Can't get to the phone, I'm probably on a job "
        "site. Leave your name and number and I'll ring you back."
    ),
    (
        "This is {first} {last}. I'm in meetings for most of today. Leave a "
        "message, or for anything urgent, press zero to reach reception."
    ),
    (
        "Thanks for calling {company}, the practice is now closed. If this is a "
        "medical emergency, please hang up and dial nine one one. Otherwise, "
        "leave a message and we'll call you back tomorrow."
    ),
    (
        "Hi, you've reached {first} from {company}. I'm on annual leave this week "
        "with no access to voicemail. Please email {dept} for anything urgent."
    ),
    (
        "Hello, you've reached {company}. Sorry we missed your call. Leave a "
        "message, or visit our website to book online."
    ),
    "You've reached {first} {last}'s desk. Go ahead.",
]

VM_CARRIER = [
    "The wireless customer you are calling is not available. Please try your call again later.",
    "The number you have called is switched off. Please try again later.",
    (
        "The Google subscriber you have called is not available. Please leave a "
        "message after the tone."
    ),
    "Please leave your message for {number}.",
    (
        "The person you are calling is not available. At the tone, please record "
        "your message. When you have finished recording, you may hang up."
    ),
    "The mailbox is full and cannot accept any messages at this time. Goodbye.",
    (
        "Your call has been forwarded to an automated voice messaging system. "
        "{number} is not available."
    ),
    "The number you are trying to reach is currently switched off. Please try later.",
    (
        "Welcome to the Vodafone voicemail service. The person you are calling is "
        "unavailable. Please leave a message after the tone."
    ),
    ("Sorry, the person you're calling has a voice mailbox that has not been set up yet. Goodbye."),
    "The O2 customer you are calling is not available. Please try later or send a text.",
    ("Record your message after the tone. When finished, hang up or press pound for more options."),
]

IVR_MENU = [
    (
        "Thank you for calling {company}. For {dept}, press one. For {dept2}, "
        "press two. For all other enquiries, please stay on the line."
    ),
    "In a few words, tell me why you're calling.",
    "Welcome to {company}. Please listen carefully as our menu options have changed.",
    (
        "Hello, and welcome to {company}. To help us direct your call, please "
        "say or enter your account number."
    ),
    (
        "You've reached {company}. If you know your party's extension, you may "
        "dial it at any time. For a company directory, press nine."
    ),
    (
        "Thank you for calling {company}. Our offices are currently closed. Our "
        "opening hours are eight a.m. to six p.m., Monday to Friday. To leave a "
        "message, press one. To hear these options again, press star."
    ),
    (
        "Hi, I'm the {company} virtual assistant. You can say things like check "
        "my balance or report a problem. What can I help you with?"
    ),
    "For English, press one. Para español, oprima el dos.",
    (
        "Welcome to {company}. Calls may be recorded for training and quality "
        "purposes. Please choose from the following options."
    ),
    "Namaste, welcome to {company}. For Hindi, press one. For English, press two.",
    (
        "Good {tod} and thank you for calling {company}. If you're calling about "
        "an existing order, press one. To speak to someone in {dept}, press two."
    ),
    (
        "Welcome. Are you calling about your bill, a technical issue, or "
        "something else? Just say it in a few words."
    ),
    (
        "Thanks for calling {company}. Please enter the extension of the person "
        "you're trying to reach, followed by the hash key."
    ),
    (
        "You have reached the {dept} department. Please say the name of the "
        "person you wish to speak to."
    ),
    (
        "Thank you for calling {company}. Did you know you can manage your "
        "account online? Otherwise, please hold for the main menu."
    ),
]

IVR_QUEUE = [
    (
        "Thank you for holding. All of our agents are currently busy. Your call "
        "is important to us, please stay on the line."
    ),
    "You are currently number {mins} in the queue.",
    "Please hold while we connect your call.",
    (
        "We're experiencing higher than normal call volumes. The estimated wait "
        "time is {mins} minutes."
    ),
    "Your call is being transferred, please hold.",
    (
        "All our advisors are busy helping other customers. Please continue to "
        "hold and we'll be with you as soon as possible."
    ),
    (
        "Thanks for your patience. Someone from {dept} will be with you shortly. "
        "Alternatively, you can request a callback by pressing one."
    ),
    ("Please hold the line, your call will be answered by the next available representative."),
    "This call may be monitored or recorded. Please hold, an agent will be with you shortly.",
    "Thank you for waiting. You are caller number {mins}. Please continue to hold.",
]
