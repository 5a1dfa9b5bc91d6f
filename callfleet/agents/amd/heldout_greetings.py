"""Held-out AMD greeting templates for evaluation only.

Written without sight of the phrase model or the development templates; used only to
evaluate the detector, never for tuning it.
"""

HUMAN_SHORT = [
    "Hello?",
    "Hi, this is {first}.",
    "Yeah, hello?",
    "{first} speaking.",
    "Hello, who's this?",
    "Yep?",
    "Good {tod}.",
    "Hi there.",
    "Hey, what's up?",
    "Hello, {last} residence.",
    "Yes?",
    "Hiya.",
    "Speaking.",
    "Hello, {company}.",
    "This is {first}.",
    "G'day.",
    "Uh, hello?",
    "Hi, can I help you?",
    "Hello, go ahead.",
    "Mm-hm, hello?",
    "Who's calling?",
    "Hey, {first} here.",
    "Allo? Hello?",
    "Hello, yes?",
    "Hi, it's {first}.",
]

HUMAN_LONG = [
    "Good {tod}, thank you for calling {company}, this is {first}, how can I help you?",
    "Hello? Sorry, hang on, I'm driving and you're on speaker. Who is this?",
    "Hi, yeah, this is {first}, I can barely hear you, I'm at the train station, can you speak up?",
    "Hello? My mom is in the kitchen. Who is this? I'm {first} and I'm six.",
    "{company}, {dept}, {first} {last} speaking, how may I direct your call?",
    "Hello, {first} {last}'s phone, this is {first2}, his assistant. Can I help you?",
    "Yeah, hello, sorry, I've got my hands full here, who's calling please?",
    "Hello? Hello? Is anybody there? I can't hear a thing.",
    "Hi, you've got {first}, sorry about the noise, we're at a birthday party, what's going on?",
    "Good {tod}, {last} and Sons Plumbing, {first} speaking.",
    "Hello, is this about the delivery? I've been waiting in all {tod}.",
    "Oh hi, sorry, I was just about to call someone else. Who's this?",
    "Hello, this is Doctor {last}, I'm the one on call tonight, what can I do for you?",
    "Hi, um, hold on one second, let me just turn the TV down. Okay, sorry, hello?",
    "Yes hello, {first} here, I'm in a meeting so can you make it quick?",
    "Hello? If this is about my car's extended warranty again, I'm really not interested.",
    "Hey, {first} here, I don't recognise this number, who am I speaking with?",
    "Hello, this is {first}, I'm right in the middle of something, is it urgent?",
    "Hi, {company} front desk, this is {first}, are you calling to book an appointment?",
    (
        "Hello, um, this is {first2}, I'm {first}'s son. Dad can't come to the phone right now, "
        "can I take a message?"
    ),
]

HUMAN_SECOND = [
    "Hello?",
    "Hello? Anyone there?",
    "Hello, can you hear me?",
    "Hey, you're breaking up. Hello?",
    "Is someone there?",
    "Hello? I think it's a bad line.",
    "Hello-o? I can't hear you.",
    "Are you there?",
    "Yeah, hi, who is this? Hello?",
    "Hello? I'm going to hang up.",
]

VM_PERSONAL = [
    "Hey, it's {first}. Leave me something after the beep.",
    (
        "Hi, you've reached {first} {last}. I can't get to the phone right now, but if you leave "
        "your name and number I'll call you back as soon as I can."
    ),
    "{first}. Beep. You know what to do.",
    "Hey! Ha, gotcha, this is just voicemail. Talk after the tone.",
    "Hi, this is {first}, I'm probably out walking the dog. Text me, I'm way quicker with texts.",
    (
        "You've reached {first} and {first2}. We're not around, so say something nice after the "
        "beep and we'll get back to you."
    ),
    (
        "Hello, this is {first} {last}. Sorry I missed your call. Please leave a brief message "
        "and I'll return your call when I'm back."
    ),
    (
        "Namaste, hi, this is {first}. I'm not able to take your call just now, kindly leave your"
        " name and number and I will revert back shortly."
    ),
    (
        "Hi, it's {first}. I'm away until Monday with patchy signal. If it's urgent, ring "
        "{first2} on {number}."
    ),
    "This is {first}. Can't talk. Later.",
    "Hey, you got {first}. I'm either on the other line or avoiding you. Kidding. Probably.",
    (
        "G'day, you've rung {first}. I'm out on the water, so leave your details and I'll ring "
        "you back."
    ),
    (
        "Hi, this is the {last} family! We can't come to the phone right now, so please leave a "
        "message after the tone. Bye!"
    ),
    (
        "Hi, you've reached {number}. Nobody's available to take your call. Please leave your "
        "name, number and a short message."
    ),
    (
        "Hi, this is {first}. If you're calling about the car, it's been sold. Otherwise, you "
        "know what to do."
    ),
    "Yo, {first} here. Well, not really here. Hit me back later or drop me a voicemail.",
    "Hiya, it's {first}, I'm at work till six. Leave us a message and I'll ring you back tonight.",
    (
        "Hello? Hello? Sorry, I'm not actually here, this is a recording. Leave your name after "
        "the beep."
    ),
    (
        "Hi, thanks for calling. I'm unable to answer at the moment, please leave your name, "
        "number and the reason for your call."
    ),
    (
        "Hi, this is {first} {last}. I'm travelling this week and checking voicemail once a day. "
        "For anything urgent, please email me instead."
    ),
]

VM_BUSINESS = [
    (
        "You have reached the voicemail of {first} {last}, {dept} at {company}. I am either on "
        "another call or away from my desk. Please leave your name, number and a brief message, "
        "and I will return your call. If you need immediate assistance, press zero to reach the "
        "operator."
    ),
    (
        "Hi, you've reached {first} in {dept}. I'm out of the office until the fourteenth with no"
        " access to email or voicemail. For urgent matters please contact {first2} {last} on "
        "{number}."
    ),
    (
        "Thank you for calling {company}. Our office is currently closed. Please leave a detailed"
        " message including your name and phone number, and a member of our team will return your"
        " call on the next business day."
    ),
    (
        "Hello, you have reached {first} {last}. I'm not available right now. Please record your "
        "message. When you have finished recording, hang up or press pound for more options."
    ),
    (
        "{first} {last} is not available. Record your message at the tone. When you are finished,"
        " hang up or press one for more options."
    ),
    (
        "Hi, this is {first} with {company}. Sorry I missed you. Leave me your details and I'll "
        "get right back to you."
    ),
    (
        "Thank you for calling {company} {dept}. All of our staff are assisting other customers. "
        "Please leave your name, account number and a callback number, and we will return your "
        "call within one business day."
    ),
    (
        "You've reached {company}. We're out on a job right now. Leave your name, address and "
        "what you need done, and we'll call you back today."
    ),
    (
        "Sorry, {first} {last} can't answer right now. Please leave a message after the tone. "
        "When you've finished recording, you can hang up."
    ),
    (
        "Hello, you've reached the office of Doctor {last}. If this is a medical emergency, "
        "please hang up and dial nine one one. Otherwise, leave a message and our staff will "
        "return your call."
    ),
    (
        "The person at extension two one four is not available. Please leave your message after "
        "the tone."
    ),
    (
        "Good {tod}, {company}, this is {first}'s line. I'm with a client at the moment. Leave a "
        "message, or for sales press one to be transferred."
    ),
]

VM_CARRIER = [
    "The person you are calling is not available. Please leave a message after the tone.",
    "The number you have dialled is switched off. Please try again later.",
    (
        "The subscriber you are trying to reach is currently outside the coverage area. Please "
        "try again later."
    ),
    (
        "The number you are calling is either switched off or not reachable at the moment. Please"
        " try after some time."
    ),
    "The Vodafone customer you are calling is not available. Please try later or send a text.",
    "The person you are calling has a voice mailbox that has not been set up yet. Goodbye.",
    "The mailbox is full and cannot accept any messages at this time. Goodbye.",
    "The wireless customer you are calling is not available. Please try your call again later.",
    (
        "Your call has been forwarded to an automatic voice message system. {number} is not "
        "available. At the tone, please record your message. When you have finished recording, "
        "you may hang up or press one for more options."
    ),
    (
        "The Google Voice subscriber you have called is not available. Please leave a message "
        "after the tone."
    ),
    "Sorry, the number you have called is not accepting calls at this time.",
    (
        "Hello, the mobile you are calling can't take your call at the moment. Please leave a "
        "message after the tone, or hang up and send a text."
    ),
]

IVR_MENU = [
    (
        "Thank you for calling {company}. This call may be monitored or recorded for quality "
        "assurance and training purposes. Please listen carefully, as our menu options have "
        "recently changed. For {dept}, press one. For {dept2}, press two. For all other "
        "inquiries, press three."
    ),
    (
        "Welcome to {company}. In a few words, tell me why you're calling. For example, you can "
        "say 'check my balance' or 'report a lost card'."
    ),
    (
        "Thank you for calling {company} Pharmacy. If you are a doctor's office, press one. To "
        "refill a prescription, press two or say 'refill'. For store hours and directions, press "
        "three."
    ),
    (
        "Thanks for calling {company}. If you smell gas, hang up, leave the area immediately and "
        "call nine one one. To report an outage, press one. To pay your bill, press two."
    ),
    (
        "You have reached the {dept} office. Our offices are currently closed. Our hours of "
        "operation are Monday through Friday, eight a.m. to five p.m. Please call back during "
        "normal business hours. Goodbye."
    ),
    (
        "Welcome to {company} Airlines. Para español, oprima el dos. If you're calling about a "
        "flight departing within the next twenty-four hours, press one. To make a new "
        "reservation, press two."
    ),
    (
        "You have reached {company} Family Medicine. If this is a medical emergency, please hang "
        "up and dial nine one one. To schedule or cancel an appointment, press one. For "
        "prescription refills, press two. For billing, press three. To speak with a nurse, press "
        "four."
    ),
    (
        "Hello, and welcome to {company}. To help us direct your call, please enter your sixteen "
        "digit card number followed by the pound key."
    ),
    (
        "Thank you for calling {company}, proud to be voted number one in customer satisfaction "
        "three years running. Did you know you can manage your account any time in our app? Now, "
        "please choose from the following options."
    ),
    (
        "Welcome to {company}. Please say or enter your account number. If you don't have it, say"
        " 'I don't know it'."
    ),
    (
        "If you know your party's extension, you may dial it at any time. For a company "
        "directory, press nine. For the operator, press zero."
    ),
    (
        "Welcome to {company} Bank. For your security, we need to verify your identity. Please "
        "enter your date of birth, two digits for the month, two for the day and four for the "
        "year."
    ),
    (
        "Hi, I'm {first}, {company}'s virtual assistant. I can help with most things, like "
        "tracking an order or changing your address. What can I help you with today?"
    ),
    (
        "Thank you for calling the {dept} helpline. Calls to this number are free from landlines "
        "and mobiles. For a new claim, press one. If you're calling about an existing claim, "
        "press two."
    ),
    (
        "You've reached {company}. It looks like you're calling from a number linked to an "
        "account ending in {number}. Is that the account you're calling about? Please say yes or "
        "no."
    ),
]

IVR_QUEUE = [
    (
        "All of our agents are currently busy. Your call is important to us. Please stay on the "
        "line and your call will be answered in the order it was received."
    ),
    "You are caller number {mins} in the queue. The estimated wait time is {mins} minutes.",
    (
        "Thank you for holding. We are experiencing higher than normal call volumes. Rather than "
        "wait on hold, press one and we'll call you back when it's your turn, without losing your"
        " place in line."
    ),
    "Please continue to hold. A representative will be with you shortly.",
    "Your call is being transferred. Please hold.",
    (
        "Thanks for your patience. Your expected wait time is approximately {mins} minutes. Did "
        "you know many questions can be answered on our website at {company} dot com?"
    ),
    (
        "We're sorry, all of our lines are busy. Please hold and the next available {dept} "
        "advisor will take your call. Calls may be recorded for training purposes."
    ),
    (
        "Hello, you're through to {company}. We're really busy at the moment, so you may have a "
        "bit of a wait. If your query isn't urgent, please call back later."
    ),
    "Please hold while we connect your call.",
    (
        "Due to extremely high demand, we are unable to take your call at this time. Please try "
        "again later. Goodbye."
    ),
]
