HEAR zip AS ZIPCODE
TALK "zip " + zip
HEAR cep AS ZIPCODE
TALK "cep " + cep
